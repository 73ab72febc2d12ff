// Exact (erf) GELU and its derivative.

// out = 0.5 x (1 + erf(x / sqrt 2))
extern "C" __global__ void gelu_forward(float* out, const float* x, int n) {
    GRID_LOOP(i, n) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    }
}

// dx = dy * (0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi))
extern "C" __global__ void gelu_backward(float* dx, const float* dy, const float* x, int n) {
    GRID_LOOP(i, n) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

// Max over the middle axis of x (outer, len, inner), as torch.max(x, axis)[0].
// The gradient goes to the first position holding the maximum; backward
// recomputes that position from x instead of storing indices.

// The first l in [0, len) with the largest x[o, l, i] (a strict > keeps the first).
__device__ __forceinline__ int argmax_at(const float* x, long long o, long long i, int len,
                                         int inner) {
    long long base = o * len * inner + i;
    float best = x[base];
    int arg = 0;
    for (int l = 1; l < len; ++l) {
        float v = x[base + (long long)l * inner];
        if (v > best) { best = v; arg = l; }
    }
    return arg;
}

extern "C" __global__ void max_axis_forward(float* out, const float* x, int outer, int len,
                                            int inner) {
    GRID_LOOP(t, (long long)outer * inner) {
        long long o = t / inner, i = t % inner;
        out[t] = x[(o * len + argmax_at(x, o, i, len, inner)) * inner + i];
    }
}

// dx = 0 except dx[o, argmax, i] = dy[o, i]; one thread per (o, i) writes its whole column.
extern "C" __global__ void max_axis_backward(float* dx, const float* dy, const float* x, int outer,
                                             int len, int inner) {
    GRID_LOOP(t, (long long)outer * inner) {
        long long o = t / inner, i = t % inner;
        int arg = argmax_at(x, o, i, len, inner);
        for (int l = 0; l < len; ++l)
            dx[(o * len + l) * inner + i] = l == arg ? dy[t] : 0.0f;
    }
}

// Elementwise ops, broadcasts over leading dims, reductions and layout copies.

// x[i] = value
extern "C" __global__ void fill(float* x, float value, int n) {
    GRID_LOOP(i, n) x[i] = value;
}

// x[i] = alpha * src[0]: the gradient of a sum, whose seed lives on the device.
extern "C" __global__ void fill_from_scalar(float* x, const float* src, float alpha, int n) {
    float v = alpha * src[0];
    GRID_LOOP(i, n) x[i] = v;
}

// x *= alpha
extern "C" __global__ void scale(float* x, float alpha, int n) {
    GRID_LOOP(i, n) x[i] *= alpha;
}

// y += alpha * x
extern "C" __global__ void axpy(float* y, float alpha, const float* x, int n) {
    GRID_LOOP(i, n) y[i] += alpha * x[i];
}

// out = a op b with b repeated every nb values (nb == n: same shape).
// op: 0 add, 1 sub, 2 mul. out may alias a.
extern "C" __global__ void binary_broadcast(float* out, const float* a, const float* b, int op,
                                            int n, int nb) {
    GRID_LOOP(i, n) {
        float x = a[i], y = b[i % nb];
        out[i] = op == 0 ? x + y : (op == 1 ? x - y : x * y);
    }
}

// out = f(x); op: 0 tanh, 1 relu.
extern "C" __global__ void unary(float* out, const float* x, int op, int n) {
    GRID_LOOP(i, n) out[i] = op == 0 ? tanhf(x[i]) : fmaxf(x[i], 0.0f);
}

// dx = dy * f'(x) from the output y = f(x); op: 0 tanh (1 - y^2), 1 relu (y > 0).
extern "C" __global__ void unary_backward(float* dx, const float* dy, const float* y, int op, int n) {
    GRID_LOOP(i, n) {
        float g = dy[i], v = y[i];
        dx[i] = op == 0 ? g * (1.0f - v * v) : (v > 0.0f ? g : 0.0f);
    }
}

// Column sums: out (cols) += sum over rows of x (rows, cols). Grid (ceil(cols / block),
// row chunks): each thread sums one column over `rows_per_block` rows, then adds
// atomically. `out` must be zeroed first.
extern "C" __global__ void sum_rows(float* out, const float* x, int rows, int cols,
                                    int rows_per_block) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    int r0 = blockIdx.y * rows_per_block;
    int r1 = min(rows, r0 + rows_per_block);
    float s = 0.0f;
    for (int r = r0; r < r1; ++r) s += x[(long long)r * cols + c];
    atomicAdd(&out[c], s);
}

// out (outer, inner) = sum over the middle axis of x (outer, len, inner).
extern "C" __global__ void sum_axis(float* out, const float* x, int outer, int len, int inner) {
    GRID_LOOP(i, (long long)outer * inner) {
        long long o = i / inner, j = i % inner;
        float s = 0.0f;
        for (int l = 0; l < len; ++l) s += x[(o * len + l) * inner + j];
        out[i] = s;
    }
}

// dx (outer, len, inner) = dy (outer, inner) repeated over the middle axis.
extern "C" __global__ void expand_axis(float* dx, const float* dy, int outer, int len, int inner) {
    GRID_LOOP(i, (long long)outer * len * inner) {
        long long j = i % inner, o = i / ((long long)len * inner);
        dx[i] = dy[o * inner + j];
    }
}

// One f64 partial sum (of squares when square != 0) per block; the grid size is
// the number of partials.
extern "C" __global__ void sum_partials(double* partials, const float* x, int square, int n) {
    double s = 0.0;
    GRID_LOOP(i, n) {
        double v = x[i];
        s += square ? v * v : v;
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// One block: out[slot] = sum of the partials (f64).
extern "C" __global__ void sum_final_f64(double* out, int slot, const double* partials, int np) {
    double s = 0.0;
    for (int i = threadIdx.x; i < np; i += blockDim.x) s += partials[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) out[slot] = s;
}

// One block: out[0] = scale * sum of the partials, rounded to f32 once.
extern "C" __global__ void sum_final_f32(float* out, const double* partials, int np, float scale) {
    double s = 0.0;
    for (int i = threadIdx.x; i < np; i += blockDim.x) s += partials[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) out[0] = (float)(s * (double)scale);
}

// Row softmax with an optional additive mask, and its backward. One block per row.

// y = softmax(x + mask[r / rows_per_mask_row]) over rows of `cols`. Without a mask
// (has_mask == 0) `mask` is not read. y may alias x.
extern "C" __global__ void softmax_forward(float* y, const float* x, const float* mask, int has_mask,
                                           int rows, int cols, int rows_per_mask_row) {
    int r = blockIdx.x;
    if (r >= rows) return;
    long long base = (long long)r * cols;
    const float* m = has_mask ? mask + (long long)(r / rows_per_mask_row) * cols : nullptr;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, x[base + j] + (m ? m[j] : 0.0f));
    mx = block_max(mx);
    float s = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) s += expf(x[base + j] + (m ? m[j] : 0.0f) - mx);
    float inv = 1.0f / block_sum(s);
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
        y[base + j] = expf(x[base + j] + (m ? m[j] : 0.0f) - mx) * inv;
}

// dx = y * (dy - sum(dy * y)) per row. dx may alias dy.
extern "C" __global__ void softmax_backward(float* dx, const float* dy, const float* y, int rows,
                                            int cols) {
    int r = blockIdx.x;
    if (r >= rows) return;
    long long base = (long long)r * cols;
    float dot = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dot += dy[base + j] * y[base + j];
    dot = block_sum(dot);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dx[base + j] = y[base + j] * (dy[base + j] - dot);
}

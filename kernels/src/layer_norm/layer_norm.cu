// LayerNorm over the last axis and PIXEL's per-patch target normalisation.
// One block per row; statistics reduced over the block.

// out = (x - mean) * rstd * w + b per row; saves mean and rstd (biased variance).
extern "C" __global__ void layer_norm_forward(float* out, float* mean, float* rstd, const float* x,
                                              const float* w, const float* b, int rows, int cols,
                                              float eps) {
    int r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + (long long)r * cols;
    float* orow = out + (long long)r * cols;
    float s = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) s += xr[j];
    float mu = block_sum(s) / cols;
    float v = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float d = xr[j] - mu;
        v += d * d;
    }
    float rs = 1.0f / sqrtf(block_sum(v) / cols + eps);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) orow[j] = (xr[j] - mu) * rs * w[j] + b[j];
    if (threadIdx.x == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w.
extern "C" __global__ void layer_norm_backward_dx(float* dx, const float* dy, const float* x,
                                                  const float* w, const float* mean,
                                                  const float* rstd, int rows, int cols) {
    int r = blockIdx.x;
    if (r >= rows) return;
    long long base = (long long)r * cols;
    float mu = mean[r], rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float g = dy[base + j] * w[j];
        sg += g;
        sgx += g * (x[base + j] - mu) * rs;
    }
    float mean_g = block_sum(sg) / cols;
    float mean_gx = block_sum(sgx) / cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float g = dy[base + j] * w[j];
        float xhat = (x[base + j] - mu) * rs;
        dx[base + j] = rs * (g - mean_g - xhat * mean_gx);
    }
}

// dw += sum_r dy * xhat, db += sum_r dy over a chunk of rows (grid: column
// blocks x row chunks); dw and db must be zeroed first.
extern "C" __global__ void layer_norm_backward_dwdb(float* dw, float* db, const float* dy,
                                                    const float* x, const float* mean,
                                                    const float* rstd, int rows, int cols,
                                                    int rows_per_block) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    int r0 = blockIdx.y * rows_per_block;
    int r1 = min(rows, r0 + rows_per_block);
    float sw = 0.0f, sb = 0.0f;
    for (int r = r0; r < r1; ++r) {
        long long k = (long long)r * cols + c;
        float g = dy[k];
        sw += g * (x[k] - mean[r]) * rstd[r];
        sb += g;
    }
    atomicAdd(&dw[c], sw);
    atomicAdd(&db[c], sb);
}

// (x - mean) / sqrt(var + eps) per row with the unbiased variance (C - 1), f64
// statistics as on the CPU. Saves rstd.
extern "C" __global__ void normalize_rows_forward(float* out, float* rstd, const float* x, int rows,
                                                  int cols, float eps) {
    int r = blockIdx.x;
    if (r >= rows) return;
    long long base = (long long)r * cols;
    double s = 0.0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) s += x[base + j];
    double mu = block_sum_d(s) / cols;
    double v = 0.0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        double d = x[base + j] - mu;
        v += d * d;
    }
    double rs = 1.0 / sqrt(block_sum_d(v) / (cols - 1) + (double)eps);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) out[base + j] = (float)((x[base + j] - mu) * rs);
    if (threadIdx.x == 0) rstd[r] = (float)rs;
}

// dx = r (dy - mean(dy)) - r^3 (x - mu) sum(dy (x - mu)) / (C - 1).
extern "C" __global__ void normalize_rows_backward(float* dx, const float* dy, const float* x,
                                                   const float* rstd, int rows, int cols) {
    int r = blockIdx.x;
    if (r >= rows) return;
    long long base = (long long)r * cols;
    double rs = rstd[r];
    double s = 0.0, sdy = 0.0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        s += x[base + j];
        sdy += dy[base + j];
    }
    double mu = block_sum_d(s) / cols;
    double mean_dy = block_sum_d(sdy) / cols;
    double dot = 0.0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dot += dy[base + j] * (x[base + j] - mu);
    dot = block_sum_d(dot);
    double k = rs * rs * rs * dot / (cols - 1);
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
        dx[base + j] = (float)(rs * (dy[base + j] - mean_dy) - k * (x[base + j] - mu));
}

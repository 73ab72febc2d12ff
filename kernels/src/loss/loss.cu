// Losses: PIXEL's weighted per-patch MSE and cross-entropy with an ignore
// index. Row kernels write one value per row; the host sums them on the device.

// row_loss[r] = w[r] * mean_j (p - y)^2, 0 where w[r] == 0. One block per row.
extern "C" __global__ void masked_mse_rows(float* row_loss, const float* p, const float* y,
                                           const float* w, int rows, int c) {
    int r = blockIdx.x;
    if (r >= rows) return;
    if (w[r] == 0.0f) {
        if (threadIdx.x == 0) row_loss[r] = 0.0f;
        return;
    }
    long long base = (long long)r * c;
    double se = 0.0;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        double d = (double)p[base + j] - (double)y[base + j];
        se += d * d;
    }
    se = block_sum_d(se);
    if (threadIdx.x == 0) row_loss[r] = (float)((double)w[r] * se / c);
}

// dp = k_r (p - y), dt = -dp with k_r = dloss * 2 w_r / (c * wsum).
extern "C" __global__ void masked_mse_backward(float* dp, float* dt, const float* p, const float* y,
                                               const float* w, const float* dloss, int rows, int c,
                                               float inv_wsum) {
    double g = dloss[0];
    GRID_LOOP(i, (long long)rows * c) {
        float wr = w[i / c];
        float k = (float)(g * 2.0 * wr * inv_wsum / c);
        float d = wr != 0.0f ? k * (p[i] - y[i]) : 0.0f;
        dp[i] = d;
        dt[i] = -d;
    }
}

// Softmax of each row of logits (rows, k) into probs and the row's loss
// log(sum exp) - z[label] (0 for rows labelled -100). One block per row.
extern "C" __global__ void cross_entropy_forward(float* probs, float* row_loss, const float* logits,
                                                 const int* labels, int rows, int k) {
    int r = blockIdx.x;
    if (r >= rows) return;
    long long base = (long long)r * k;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < k; j += blockDim.x) mx = fmaxf(mx, logits[base + j]);
    mx = block_max(mx);
    double s = 0.0;
    for (int j = threadIdx.x; j < k; j += blockDim.x) s += exp((double)(logits[base + j] - mx));
    s = block_sum_d(s);
    for (int j = threadIdx.x; j < k; j += blockDim.x)
        probs[base + j] = (float)(exp((double)(logits[base + j] - mx)) / s);
    if (threadIdx.x == 0) {
        int l = labels[r];
        row_loss[r] = l == -100 ? 0.0f : (float)(log(s) - (double)(logits[base + l] - mx));
    }
}

// dlogits = (probs - onehot(label)) * dloss / count; 0 for ignored rows.
// dlogits may alias probs.
extern "C" __global__ void cross_entropy_backward(float* dlogits, const float* probs,
                                                  const int* labels, const float* dloss, int rows,
                                                  int k, float inv_count) {
    float g = dloss[0] * inv_count;
    GRID_LOOP(i, (long long)rows * k) {
        long long r = i / k, j = i % k;
        int l = labels[r];
        dlogits[i] = l == -100 ? 0.0f : (probs[i] - (j == l ? 1.0f : 0.0f)) * g;
    }
}

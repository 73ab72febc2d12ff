// HuggingFace AdamW as one fused kernel over every parameter (see
// kernels/src/adamw/mod.rs for the update rule). Parameter t owns elements
// [offsets[t], offsets[t + 1]) of one flat index space; its value, gradient
// and both moments are separate buffers, found through the pointer tables.
extern "C" __global__ void adamw_fused(const unsigned long long* params,
                                       const unsigned long long* grads,
                                       const unsigned long long* ms,
                                       const unsigned long long* vs, const long long* offsets,
                                       const float* decay, int num_tensors, long long total,
                                       float step_size, float beta1, float beta2, float eps) {
    GRID_LOOP(i, total) {
        // The parameter holding element i: the last t with offsets[t] <= i.
        int lo = 0, hi = num_tensors - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) >> 1;
            if (offsets[mid] <= i) lo = mid; else hi = mid - 1;
        }
        float* p = (float*)params[lo];
        const float* g = (const float*)grads[lo];
        float* m = (float*)ms[lo];
        float* v = (float*)vs[lo];
        long long j = i - offsets[lo];
        float gi = g[j];
        float mi = beta1 * m[j] + (1.0f - beta1) * gi;
        float vi = beta2 * v[j] + (1.0f - beta2) * gi * gi;
        m[j] = mi;
        v[j] = vi;
        float x = p[j] - step_size * mi / (sqrtf(vi) + eps);
        p[j] = x - decay[lo] * x;
    }
}

// HuggingFace AdamW as one fused kernel over every parameter (see
// kernels/src/adamw.rs for the update rule). Parameter t owns elements
// [offsets[t], offsets[t + 1]) of one flat index space; the moments are one
// flat buffer each, indexed the same way.
extern "C" __global__ void adamw_fused(const unsigned long long* params,
                                       const unsigned long long* grads, float* m, float* v,
                                       const long long* offsets, const float* decay,
                                       int num_tensors, long long total, float step_size,
                                       float beta1, float beta2, float eps) {
    GRID_LOOP(i, total) {
        // The parameter holding element i: the last t with offsets[t] <= i.
        int lo = 0, hi = num_tensors - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) >> 1;
            if (offsets[mid] <= i) lo = mid; else hi = mid - 1;
        }
        float* p = (float*)params[lo];
        const float* g = (const float*)grads[lo];
        long long j = i - offsets[lo];
        float gi = g[j];
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float x = p[j] - step_size * mi / (sqrtf(vi) + eps);
        p[j] = x - decay[lo] * x;
    }
}

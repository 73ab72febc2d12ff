// Inverted dropout with a counter-based RNG: element i is kept when a hash of
// (seed, i) is >= p, so the mask is never stored: backward (and attention's
// recomputation) regenerate it from the seed.

// Uniform in [0, 1) from (seed, i): SplitMix64's finaliser on seed + (i + 1) * golden.
__device__ __forceinline__ float uniform_at(unsigned long long seed, unsigned long long i) {
    unsigned long long z = seed + (i + 1ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

// out[i] = x[i] * keep_scale where kept, 0 where dropped. out may alias x.
extern "C" __global__ void dropout_apply(float* out, const float* x, unsigned long long seed, float p,
                                         float keep_scale, int n) {
    GRID_LOOP(i, n) out[i] = uniform_at(seed, (unsigned long long)i) >= p ? x[i] * keep_scale : 0.0f;
}

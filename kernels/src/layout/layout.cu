// Row gather and scatter by index within each batch item (MAE keep/restore).

// out (B, K, C): row r = x (B, N, C) row (r / k) * n + idx[r].
extern "C" __global__ void gather_rows(float* out, const float* x, const int* idx, int rows, int k,
                                       int n, int c) {
    GRID_LOOP(i, (long long)rows * c) {
        long long r = i / c, j = i % c;
        long long src = (r / k) * n + idx[r];
        out[i] = x[src * c + j];
    }
}

// out (B, N, C) += x (B, K, C) at row (r / k) * n + idx[r]. Indices may repeat
// (every masked patch reads the one mask token), hence the atomics. out must be
// zeroed first.
extern "C" __global__ void scatter_rows_add(float* out, const float* x, const int* idx, int rows,
                                            int k, int n, int c) {
    GRID_LOOP(i, (long long)rows * c) {
        long long r = i / c, j = i % c;
        long long dst = (r / k) * n + idx[r];
        atomicAdd(&out[dst * c + j], x[i]);
    }
}

// out[i] = a[i % na]: repeat a over new leading dims.
extern "C" __global__ void repeat(float* out, const float* a, int n, int na) {
    GRID_LOOP(i, n) out[i] = a[i % na];
}

// Copy a (rows, cols) block between row-strided buffers (concat, narrow).
extern "C" __global__ void copy_2d(float* dst, int dst_ld, const float* src, int src_ld, int rows,
                                   int cols) {
    GRID_LOOP(i, (long long)rows * cols) {
        long long r = i / cols, c = i % cols;
        dst[r * dst_ld + c] = src[r * src_ld + c];
    }
}

// Dims reordered: out has shape out_shape; in_strides are the input's strides
// reordered to the output's dims. Rank at most 6.
struct PermuteArgs {
    int rank;
    int out_shape[6];
    long long in_strides[6];
};

extern "C" __global__ void permute(float* out, const float* x, PermuteArgs a, int n) {
    GRID_LOOP(i, n) {
        long long rem = i, src = 0;
        for (int d = a.rank - 1; d >= 0; --d) {
            long long idx = rem % a.out_shape[d];
            rem /= a.out_shape[d];
            src += idx * a.in_strides[d];
        }
        out[i] = x[src];
    }
}

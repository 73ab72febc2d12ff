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

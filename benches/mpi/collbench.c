/*
 * collbench: times one MPI collective over a range of sizes, for `weir bench allreduce|allgather|
 * reduce-scatter`, which builds it with mpicc, runs it with mpirun in the same run as Weir's own
 * measurement and prints the ratio.
 *
 * Usage: collbench OP MIN_BYTES MAX_BYTES BUDGET_SECONDS [SIZE...]
 *   OP: allreduce | allgather | reduce_scatter
 *   Sizes run from MIN to MAX in x4 steps plus MAX, or exactly the SIZE list when given.
 *
 * Conventions (nccl-tests; the method of docs/benchmarking.md, the same as Weir's rank side in
 * benches/src/coll/rank.rs): `size` is the allreduce vector, the gathered output of allgather
 * and the input of reduce-scatter, as float32 (sum); the element count is rounded up to a
 * multiple of the rank count. Per size: 10 warm-up calls
 * (2 from 8 MiB), then timed calls while they fit in the budget (at least 5, at most 2000),
 * each preceded by a barrier and timed on every rank; a call's time is the maximum over ranks
 * and the figure is the median over calls. The last call's result is checked exactly (the
 * inputs are small integers, so float sums are exact).
 *
 * Output, one line per size from rank 0:
 *   ROW <op> <ranks> <size_bytes> <count> <time_us> <wrong>
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum op { ALLREDUCE, ALLGATHER, REDUCE_SCATTER };

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The input of `rank` at element `i`: a small integer, so every sum is exact in float32. */
static float input(int rank, size_t i) { return (float)((rank * 7 + i * 3) % 13); }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "collbench: out of memory (%zu bytes)\n", n);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    return p;
}

/* One call of the collective. */
static void call(enum op op, const float *send, float *recv, size_t count, int n) {
    switch (op) {
    case ALLREDUCE:
        MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        break;
    case ALLGATHER:
        MPI_Allgather(send, (int)(count / n), MPI_FLOAT, recv, (int)(count / n), MPI_FLOAT,
                      MPI_COMM_WORLD);
        break;
    case REDUCE_SCATTER:
        MPI_Reduce_scatter_block(send, recv, (int)(count / n), MPI_FLOAT, MPI_SUM,
                                 MPI_COMM_WORLD);
        break;
    }
}

/* Elements of `recv` that differ from the expected result after one call. */
static uint64_t check(enum op op, const float *recv, size_t count, int rank, int n) {
    uint64_t wrong = 0;
    size_t per = count / n;
    switch (op) {
    case ALLREDUCE:
        for (size_t i = 0; i < count; i++) {
            float want = 0;
            for (int r = 0; r < n; r++) want += input(r, i);
            wrong += recv[i] != want;
        }
        break;
    case ALLGATHER:
        /* Rank r contributed input(r, j) for j in its block. */
        for (size_t i = 0; i < count; i++) wrong += recv[i] != input((int)(i / per), i % per);
        break;
    case REDUCE_SCATTER:
        for (size_t j = 0; j < per; j++) {
            float want = 0;
            for (int r = 0; r < n; r++) want += input(r, (size_t)rank * per + j);
            wrong += recv[j] != want;
        }
        break;
    }
    return wrong;
}

static void run_size(enum op op, const char *name, size_t bytes, double budget, int rank,
                     int n) {
    size_t count = (bytes + 3) / 4;
    if (count < (size_t)n) count = (size_t)n;
    count = (count + n - 1) / n * n;
    size_t per = count / n;
    size_t send_len = op == ALLGATHER ? per : count;
    size_t recv_len = op == REDUCE_SCATTER ? per : count;
    float *send = xmalloc(send_len * sizeof(float));
    float *recv = xmalloc(recv_len * sizeof(float));
    for (size_t i = 0; i < send_len; i++) send[i] = input(rank, i);
    memset(recv, 0, recv_len * sizeof(float));

    int warm = count * 4 >= (8u << 20) ? 2 : 10;
    for (int i = 0; i < warm; i++) call(op, send, recv, count, n);

    enum { MAX_CALLS = 2000, MIN_CALLS = 5 };
    static double times[MAX_CALLS];
    int calls = 0;
    double start = MPI_Wtime();
    for (;;) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        call(op, send, recv, count, n);
        double dt = MPI_Wtime() - t0, worst = 0;
        MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        times[calls++] = worst;
        /* Every rank decides the same way: rank 0's elapsed time is broadcast. */
        int more = calls < MIN_CALLS || (calls < MAX_CALLS && MPI_Wtime() - start < budget);
        MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (!more) break;
    }
    qsort(times, (size_t)calls, sizeof(double), cmp_double);
    double median = times[calls / 2];
    uint64_t wrong = check(op, recv, count, rank, n), total = 0;
    MPI_Reduce(&wrong, &total, 1, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("ROW %s %d %zu %zu %.3f %llu\n", name, n, bytes, count, median * 1e6,
               (unsigned long long)total);
        fflush(stdout);
    }
    free(send);
    free(recv);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    if (argc < 5) {
        if (rank == 0)
            fprintf(stderr, "usage: collbench OP MIN_BYTES MAX_BYTES BUDGET_S [SIZE...]\n");
        MPI_Finalize();
        return 2;
    }
    enum op op;
    if (!strcmp(argv[1], "allreduce"))
        op = ALLREDUCE;
    else if (!strcmp(argv[1], "allgather"))
        op = ALLGATHER;
    else if (!strcmp(argv[1], "reduce_scatter"))
        op = REDUCE_SCATTER;
    else {
        if (rank == 0) fprintf(stderr, "collbench: unknown op %s\n", argv[1]);
        MPI_Finalize();
        return 2;
    }
    size_t lo = strtoull(argv[2], NULL, 10), hi = strtoull(argv[3], NULL, 10);
    double budget = strtod(argv[4], NULL);
    if (argc > 5) {
        for (int i = 5; i < argc; i++)
            run_size(op, argv[1], strtoull(argv[i], NULL, 10), budget, rank, n);
    } else {
        size_t s = lo ? lo : 1;
        for (; s < hi; s *= 4) run_size(op, argv[1], s, budget, rank, n);
        run_size(op, argv[1], hi, budget, rank, n);
    }
    MPI_Finalize();
    return 0;
}

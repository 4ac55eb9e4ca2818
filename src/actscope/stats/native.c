/* One pass over a site's (R, C) float32 rows computing every per-batch partial the
 * statistics need (kernels.py states the contract; torch_partials is the same in torch).
 *
 * Two entry points share that pass:
 *   site_partials  writes the partials (kernels.Partials): the contract the tests hold
 *                  against a plain reference;
 *   site_update    folds them straight into the statistics' state tensors, listed as
 *                  (slot, length, pointer) entries, top-k and per-sample maxima included:
 *                  the measuring path, one call per site and batch with no Python between.
 *
 * Rows are cut into fixed chunks that the OpenMP threads torch already runs take one at
 * a time (libgomp is found by its soname: torch's own thread pool). Dynamic scheduling
 * keeps a loaded machine from stalling on a descheduled thread. Counts, maxima and the
 * histogram are exact in any order; float64 sums and moments are kept per chunk and
 * combined in chunk order, so every result is independent of the thread count and of timing.
 *
 * Non-finite elements (nan, +-inf) are counted (histogram, per channel) and enter no other
 * statistic: extremes, per-row max|a|, per-channel max|a|, sums and moments are over the
 * finite elements, whatever else their row holds. A row holding one is not tested for
 * massive activations (its median is not that of a finite hidden state).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef NB /* native.py passes histogram.py's values */
#define NB 16384 /* histogram bins: sign, 8 exponent bits, 5 mantissa bits */
#define SHIFT 18 /* 23 - 5 mantissa bits */
#endif
#define SUBH 4 /* sub-histograms per thread: consecutive equal bins do not stall on one counter */
#define MAXT 256
#define MAX_CHUNKS 32         /* float64 column sums are kept per chunk: bounded memory */
#define CHUNK_ELEMENTS 131072 /* at least this many elements per chunk (~0.1 ms of work) */
#ifdef _OPENMP
#include <omp.h>
#else /* built without OpenMP: one thread */
static int omp_get_thread_num(void) { return 0; }
#endif
#define MASSIVE_ABS 100.0f
#define MASSIVE_RATIO 1000.0f
#define OUTLIER_ABS 6.0f
#define FINITE(a) ((a) <= FLT_MAX) /* a = |v|: false for inf and nan */

typedef struct {
    float *tok_abs;        /* (R,) every row: max finite |a| (-1: padding, or no finite element) */
    float *ch_max;         /* (C,) max finite |a| */
    int64_t *ch_nonfinite; /* (C,) nan and +-inf elements */
    double *ch_s1, *ch_s2; /* (C,) sums of the finite a, a^2 */
    int64_t *ch_ge6;       /* (C,) elements with |a| >= 6 (inf included, nan not) */
    int64_t *ch_massive;   /* (C,) massive elements */
    int64_t *hist;         /* (NB,) */
    double *sd;            /* finite min, finite max */
    double *mom;           /* count, mean, M2, M3, M4 of the finite elements (moments_merge) */
    int64_t *si;           /* tokens > 100, candidates, massive elements, massive tokens, unchecked */
} out_t;

/* Central moments (n, mean, M2 = sum (a - mean)^2, M3, M4) of b merged into a: the parallel
 * formulas of Chan et al. (1979) and Pebay (2008); moments.merge_moments is the same in torch.
 * delta = 0 (equal means, a constant tensor) adds nothing, so a constant stays exactly constant. */
static void moments_merge(double *a, const double *b) {
    double na = a[0], nb = b[0];
    if (nb == 0) return;
    if (na == 0) {
        memcpy(a, b, 5 * sizeof(double));
        return;
    }
    double n = na + nb, d = b[1] - a[1], dn = d / n, dn2 = dn * dn, t = d * dn * na * nb;
    double m4 = a[4] + b[4] + t * dn2 * (na * na - na * nb + nb * nb) + 6 * dn2 * (na * na * b[2] + nb * nb * a[2]) +
                4 * dn * (na * b[3] - nb * a[3]);
    double m3 = a[3] + b[3] + t * dn * (na - nb) + 3 * dn * (na * b[2] - nb * a[2]);
    a[0] = n, a[1] = a[1] + nb * dn, a[2] = a[2] + b[2] + t, a[3] = m3, a[4] = m4;
}

/* One thread's share of a call, exact in any order. Kept per thread between calls (the
 * histograms are large): the C-sized arrays are cleared at the start of a call, the
 * histograms when they are read at its end. */
typedef struct {
    float *ch_max;
    uint32_t *ch_ge6; /* < R * C < 2**32 per call: 32 bits halve the traffic of the hot loop */
    int64_t *ch_massive;
    int64_t *ch_nonfinite; /* touched only by rows that hold a non-finite element */
    uint32_t *h; /* SUBH x NB */
    float *scratch;
    int64_t cap; /* channels the arrays hold */
    float lo, hi; /* finite min and max */
    int64_t si[5];
} part_t;

static _Thread_local part_t tls_part;

static void part_drop_arrays(part_t *p) {
    free(p->ch_max), free(p->ch_ge6), free(p->ch_massive), free(p->ch_nonfinite), free(p->scratch);
    p->ch_max = NULL, p->ch_ge6 = NULL, p->ch_massive = NULL, p->ch_nonfinite = NULL, p->scratch = NULL;
    p->cap = 0;
}

static part_t *part_get(int64_t C) { /* this thread's part, cleared for C channels; NULL: no memory */
    part_t *p = &tls_part;
    if (!p->h && !(p->h = calloc(SUBH * NB, sizeof(uint32_t)))) return NULL;
    if (p->cap < C) {
        part_drop_arrays(p);
        p->ch_max = malloc(C * sizeof(float)), p->ch_ge6 = malloc(C * sizeof(uint32_t));
        p->ch_massive = malloc(C * sizeof(int64_t)), p->scratch = malloc(C * sizeof(float));
        p->ch_nonfinite = malloc(C * sizeof(int64_t));
        if (!p->ch_max || !p->ch_ge6 || !p->ch_massive || !p->ch_nonfinite || !p->scratch) {
            part_drop_arrays(p);
            return NULL;
        }
        p->cap = C;
    }
    memset(p->ch_max, 0, C * sizeof(float)), memset(p->ch_ge6, 0, C * sizeof(uint32_t));
    memset(p->ch_massive, 0, C * sizeof(int64_t)), memset(p->ch_nonfinite, 0, C * sizeof(int64_t));
    p->lo = INFINITY, p->hi = -INFINITY;
    memset(p->si, 0, sizeof(p->si));
    return p;
}

/* One row, float32: its finite extremes and this thread's per-channel max finite |a| and
 * |a| >= 6 counts (and, for a row holding a non-finite element, per-channel counts of those).
 * Returns whether the row holds a non-finite element. */
static int row_scan(const float *row, int64_t C, part_t *p, float *pmn, float *pmx) {
    float mn = INFINITY, mx = -INFINITY;
    int bad = 0;
    float *chm = p->ch_max;
    uint32_t *g6 = p->ch_ge6;
#pragma omp simd reduction(min : mn) reduction(max : mx) reduction(| : bad)
    for (int64_t c = 0; c < C; c++) {
        float v = row[c], a = fabsf(v), m = chm[c];
        int fin = FINITE(a);
        float af = fin ? a : 0.0f;
        mn = v < mn ? v : mn; /* a nan never wins; an inf does: see below */
        mx = v > mx ? v : mx;
        bad |= !fin;
        chm[c] = af > m ? af : m;
        g6[c] += a >= OUTLIER_ABS; /* inf is >= 6, nan is not */
    }
    if (bad) { /* rare: the extremes again over the finite elements, and the others counted */
        mn = INFINITY, mx = -INFINITY;
        for (int64_t c = 0; c < C; c++) {
            float v = row[c];
            if (!FINITE(fabsf(v))) p->ch_nonfinite[c]++;
            else mn = v < mn ? v : mn, mx = v > mx ? v : mx;
        }
    }
    *pmn = mn, *pmx = mx;
    return bad;
}

/* One row, float64: the column sums c1, c2 of its finite elements, and its central moments
 * merged into the chunk's (mom). The moments come from sums of powers of a - K, K the row's
 * first finite element: a shift inside the data, so that (by Samuelson's inequality,
 * |a - mean| <= sd sqrt(C)) the conversion to central moments loses at most ~C**2 ulps of
 * sd**4, however far the values sit from 0 (mean 1000, sd 0.1), and a constant row has
 * every power sum exactly 0. */
static void row_sums(const float *row, int64_t C, int bad, double *c1, double *c2, double *mom) {
    int64_t k0 = 0;
    if (bad)
        while (k0 < C && !FINITE(fabsf(row[k0]))) k0++;
    if (k0 == C) return; /* no finite element */
    const double K = row[k0];
    double t1 = 0, t2 = 0, t3 = 0, t4 = 0, n = (double)C;
    if (!bad) {
#pragma omp simd reduction(+ : t1, t2, t3, t4)
        for (int64_t c = 0; c < C; c++) {
            double d = row[c], e = d - K, e2 = e * e;
            c1[c] += d;
            c2[c] = fma(d, d, c2[c]); /* exact product: the square of a float fits a double */
            t1 += e, t2 += e2;
            t3 = fma(e2, e, t3);
            t4 = fma(e2, e2, t4);
        }
    } else {
        n = 0;
        for (int64_t c = k0; c < C; c++) {
            if (!FINITE(fabsf(row[c]))) continue;
            double d = row[c], e = d - K, e2 = e * e;
            c1[c] += d, c2[c] = fma(d, d, c2[c]);
            t1 += e, t2 += e2, t3 = fma(e2, e, t3), t4 = fma(e2, e2, t4), n++;
        }
    }
    const double m = t1 / n, m2 = m * m; /* mean - K; then the sums of powers of a - mean */
    double r[5] = {n, K + m, t2 - m * t1, t3 - 3 * m * t2 + 2 * n * m2 * m,
                   t4 - 4 * m * t3 + 6 * m2 * t2 - 3 * n * m2 * m2};
    moments_merge(mom, r);
}

static void row_hist(const uint32_t *b, int64_t C, uint32_t *h) {
    int64_t c = 0;
    for (; c + 4 <= C; c += 4) {
        h[b[c] >> SHIFT]++;
        h[NB + (b[c + 1] >> SHIFT)]++;
        h[2 * NB + (b[c + 2] >> SHIFT)]++;
        h[3 * NB + (b[c + 3] >> SHIFT)]++;
    }
    for (; c < C; c++) h[b[c] >> SHIFT]++;
}

static float kth_smallest(float *a, int64_t n, int64_t k) { /* Hoare quickselect; a: finite */
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float x = a[lo], y = a[(lo + hi) / 2], z = a[hi]; /* median of three as pivot */
        float pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return a[k];
    }
    return a[k];
}

/* The two sides of Sun et al.'s ratio test, decided exactly: 1000 x a float needs at most
 * 34 significant bits, so it is exact in float64, and these return the float32 thresholds
 * that float comparisons then apply without rounding error. */
static float ratio_floor(float a) { /* the largest float <= a / 1000 */
    float t = a / MASSIVE_RATIO;
    return (double)t * MASSIVE_RATIO > (double)a ? nextafterf(t, 0.0f) : t;
}
static float ratio_ceil(float m) { /* the smallest float >= 1000 x m (inf past float's range) */
    float b = m * MASSIVE_RATIO;
    return (double)b < (double)m * MASSIVE_RATIO ? nextafterf(b, INFINITY) : b;
}

/* A finite row whose max|a| ta > 100: is its lower median <= ta / 1000 (then it may hold
 * a massive activation), and if so which elements are > 100 and >= 1000 x median.
 * 1000 x med <= a  <=>  med <= ratio_floor(a)  <=>  #{c : |x_c| <= ratio_floor(a)} >= need,
 * exactly; so an element > 100 is tested by counting. One pass counts for a = ta (the test
 * itself) and the elements > 100; the elements equal to ta (usually the only one > 100)
 * need nothing more, each other one a counting pass of its own, and past BIG_MAX of them
 * the median is found by quickselect instead. */
#define BIG_MAX 8
static void massive_hit(part_t *p, int64_t c, int64_t *hits) { p->ch_massive[c]++, (*hits)++; }

static uint32_t count_le(const float *row, int64_t C, float t) {
    uint32_t n = 0; /* C < 2**32 */
#pragma omp simd reduction(+ : n)
    for (int64_t c = 0; c < C; c++) n += fabsf(row[c]) <= t;
    return n;
}

static int massive_row(const float *row, int64_t C, float ta, part_t *p) {
    const uint32_t need = (uint32_t)((C - 1) / 2 + 1);
    const float t = ratio_floor(ta);
    uint32_t small = 0, nbig = 0;
#pragma omp simd reduction(+ : small, nbig)
    for (int64_t c = 0; c < C; c++) {
        float a = fabsf(row[c]);
        small += a <= t;
        nbig += a > MASSIVE_ABS;
    }
    if (small < need) return 0;
    int64_t hits = 0;
    if (nbig <= BIG_MAX) {
        int64_t big[BIG_MAX], found = 0;
        for (int64_t c0 = 0; c0 < C && found < nbig; c0 += 64) { /* blocks without one are skipped */
            int64_t c1 = c0 + 64 < C ? c0 + 64 : C;
            int any = 0;
#pragma omp simd reduction(| : any)
            for (int64_t c = c0; c < c1; c++) any |= fabsf(row[c]) > MASSIVE_ABS;
            for (int64_t c = c0; any && c < c1; c++)
                if (fabsf(row[c]) > MASSIVE_ABS) big[found++] = c;
        }
        for (int64_t i = 0; i < found; i++) {
            float a = fabsf(row[big[i]]);
            if (a == ta || count_le(row, C, ratio_floor(a)) >= need) massive_hit(p, big[i], &hits);
        }
    } else {
        for (int64_t c = 0; c < C; c++) p->scratch[c] = fabsf(row[c]);
        float bar = ratio_ceil(kth_smallest(p->scratch, C, need - 1));
        for (int64_t c = 0; c < C; c++) {
            float a = fabsf(row[c]);
            if (a > MASSIVE_ABS && a >= bar) massive_hit(p, c, &hits);
        }
    }
    p->si[2] += hits;
    p->si[3] += hits > 0;
    return 1;
}

/* Rows [r0, r1): per-row max|a|, this thread's exact partials, and the chunk's float64
 * sums and moments cs = (ch_s1 (C), ch_s2 (C), count, mean, M2, M3, M4), zeroed here. */
#define CS(C) (2 * (C) + 5)
static void rows(const float *x, int64_t C, int64_t r0, int64_t r1, const uint8_t *keep, float *tok_abs,
                 part_t *p, double *cs, int hist) {
    memset(cs, 0, CS(C) * sizeof(double));
    for (int64_t r = r0; r < r1; r++) {
        tok_abs[r] = -1.0f;
        if (keep && !keep[r]) continue;
        const float *row = x + r * C;
        float mn, mx;
        int bad = row_scan(row, C, p, &mn, &mx);
        row_sums(row, C, bad, cs, cs + C, cs + 2 * C);
        if (hist) row_hist((const uint32_t *)row, C, p->h);
        if (mn > mx) continue; /* no finite element */
        if (mn < p->lo) p->lo = mn;
        if (mx > p->hi) p->hi = mx;
        float ta = mx > -mn ? mx : -mn;
        tok_abs[r] = ta;
        if (!bad && ta > MASSIVE_ABS) {
            p->si[0]++;
            p->si[1] += massive_row(row, C, ta, p);
        }
    }
}

typedef struct { /* one call's merged result */
    part_t *parts[MAXT];
    int nparts;
    double *cs;
    int64_t chunks;
} pass_t;

static void merge_parts(pass_t *ps, int64_t C) { /* into parts[0]: max, min and integer sums */
    part_t *p0 = ps->parts[0];
    for (int t = 1; t < ps->nparts; t++) {
        const part_t *p = ps->parts[t];
        for (int64_t c = 0; c < C; c++) {
            float a = p->ch_max[c], m = p0->ch_max[c];
            p0->ch_max[c] = a > m ? a : m;
            p0->ch_ge6[c] += p->ch_ge6[c], p0->ch_massive[c] += p->ch_massive[c];
            p0->ch_nonfinite[c] += p->ch_nonfinite[c];
        }
        if (p->lo < p0->lo) p0->lo = p->lo;
        if (p->hi > p0->hi) p0->hi = p->hi;
        for (int k = 0; k < 5; k++) p0->si[k] += p->si[k];
    }
}

/* Bins [b0, b1) (at most HBLOCK) of every thread's sub-histograms, added into dst (or
 * stored, when store) and cleared for the next call. */
#define HBLOCK 256
static void take_hist(pass_t *ps, int64_t b0, int64_t b1, int64_t *dst, int store) {
    int64_t n[HBLOCK];
    for (int64_t b = b0; b < b1; b++) n[b - b0] = store ? 0 : dst[b];
    for (int t = 0; t < ps->nparts; t++)
        for (int k = 0; k < SUBH; k++) {
            uint32_t *h = ps->parts[t]->h + k * NB;
            for (int64_t b = b0; b < b1; b++) n[b - b0] += h[b];
            memset(h + b0, 0, (b1 - b0) * sizeof(uint32_t));
        }
    memcpy(dst + b0, n, (b1 - b0) * sizeof(int64_t));
}

/* The pass over x: tok_abs (R,) filled, partials in ps (parts merged); the histogram is
 * taken into hist (added, or stored when hist_store), or not computed when hist is NULL.
 * Returns 0, or -1 when out of memory (no part is left holding counts). */
static int pass(const float *x, int64_t R, int64_t C, const uint8_t *keep, float *tok_abs, int threads,
                int64_t *hist, int hist_store, pass_t *ps) {
    int64_t per = CHUNK_ELEMENTS / (C > 0 ? C : 1), least = (R + MAX_CHUNKS - 1) / MAX_CHUNKS;
    int64_t rpc = per > least ? per : least;
    if (rpc < 1) rpc = 1;
    int64_t chunks = (R + rpc - 1) / rpc;
    int T = threads < 1 ? 1 : (threads > MAXT ? MAXT : threads), failed = 0;
    if (chunks < T) T = chunks > 0 ? (int)chunks : 1;
    memset(ps, 0, sizeof(*ps));
    ps->chunks = chunks;
    ps->cs = malloc((chunks * CS(C) + 1) * sizeof(double));
    if (!ps->cs) return -1;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        int t = omp_get_thread_num();
        part_t *p = part_get(C);
        ps->parts[t] = p;
        if (!p) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) {
#pragma omp for schedule(dynamic, 1)
            for (int64_t k = 0; k < chunks; k++) {
                int64_t r1 = (k + 1) * rpc < R ? (k + 1) * rpc : R;
                rows(x, C, k * rpc, r1, keep, tok_abs, p, ps->cs + k * CS(C), hist != NULL);
            }
#pragma omp single
            {
                for (int i = 0; i < T; i++)
                    if (ps->parts[i]) ps->parts[ps->nparts++] = ps->parts[i];
            }
            if (hist) { /* every thread takes a share of the bins */
#pragma omp for schedule(static)
                for (int64_t b = 0; b < NB; b += HBLOCK)
                    take_hist(ps, b, b + HBLOCK < NB ? b + HBLOCK : NB, hist, hist_store);
            }
        }
    }
    if (failed) { /* before any row was read */
        free(ps->cs);
        return -1;
    }
    merge_parts(ps, C);
    return 0;
}

/* The chunks' float64 column sums ch_s1, ch_s2 (C,) and moments mom (5,), combined in chunk
 * order (independent of threads). */
static void chunk_sums(const pass_t *ps, int64_t C, double *ch_s1, double *ch_s2, double *mom) {
    memset(ch_s1, 0, C * sizeof(double)), memset(ch_s2, 0, C * sizeof(double));
    memset(mom, 0, 5 * sizeof(double));
    for (int64_t k = 0; k < ps->chunks; k++) {
        const double *c = ps->cs + k * CS(C);
        for (int64_t j = 0; j < C; j++) ch_s1[j] += c[j], ch_s2[j] += c[C + j];
        moments_merge(mom, c + 2 * C);
    }
}

/* x: (R, C) row-major; keep: (R,) 1 = real token, or NULL. Returns 0, or -1 when out of
 * memory (the caller then uses the torch implementation). Elements per call < 2**32. */
int site_partials(const float *x, int64_t R, int64_t C, const uint8_t *keep, out_t *o, int threads) {
    pass_t ps;
    if (pass(x, R, C, keep, o->tok_abs, threads, o->hist, 1, &ps) < 0) return -1;
    const part_t *p = ps.parts[0];
    memcpy(o->ch_max, p->ch_max, C * sizeof(float));
    for (int64_t c = 0; c < C; c++) o->ch_ge6[c] = p->ch_ge6[c];
    memcpy(o->ch_massive, p->ch_massive, C * sizeof(int64_t));
    memcpy(o->ch_nonfinite, p->ch_nonfinite, C * sizeof(int64_t));
    chunk_sums(&ps, C, o->ch_s1, o->ch_s2, o->mom);
    o->sd[0] = p->lo, o->sd[1] = p->hi;
    memcpy(o->si, p->si, sizeof(p->si));
    o->si[4] = 0; /* every candidate token was checked */
    free(ps.cs);
    return 0;
}

/* ---- site_update: the partials folded into state ---------------------------------- */

/* The slots a statistic's state tensor can receive, with the fold of each (native.py
 * reads the names from slot_names(), so the two lists cannot drift apart). */
#define SLOTS(X)                                                                                   \
    X(ELEMENTS, "elements")                 /* i64 ()   += real rows x C */                        \
    X(TOKENS, "tokens")                     /* i64 ()   += real rows */                            \
    X(MIN, "min")                           /* f64 ()   min= finite min */                         \
    X(MAX, "max")                           /* f64 ()   max= finite max */                         \
    X(CH_ABSMAX, "ch_absmax")               /* f32 (C)  max= finite max|a| */                      \
    X(CH_NONFINITE, "ch_nonfinite")         /* i64 (C)  += nan and +-inf elements */               \
    X(MOMENTS, "moments")                   /* f64 (5)  moments_merge= (n, mean, M2, M3, M4) */     \
    X(CH_S1, "ch_s1") X(CH_S2, "ch_s2")     /* f64 (C)  += */                                      \
    X(HIST, "hist")                         /* i64 (NB) += */                                      \
    X(OVER_100, "tokens_over_100")          /* i64 ()   += (si[0..4]) */                           \
    X(CANDIDATES, "candidates") X(MASSIVE_ELEMENTS, "massive_elements")                          \
    X(MASSIVE_TOKENS, "massive_tokens") X(UNCHECKED, "unchecked_tokens")                         \
    X(CH_GE6, "ch_ge6") X(CH_MASSIVE, "ch_massive") /* i64 (C) += */                              \
    X(SAMPLE_MAX, "sample_max")             /* f32 (n_samples) max= by sample */                   \
    X(TOPK_ABSVAL, "topk_absval") X(TOPK_VALUE, "topk_value")     /* f32 (k) */                  \
    X(TOPK_SAMPLE, "topk_sample") X(TOPK_POS, "topk_pos")         /* i64 (k) */                  \
    X(TOPK_CHANNEL, "topk_channel") X(TOPK_TOKEN, "topk_token")   /* i64 (k) */
#define SLOT_ENUM(id, name) SLOT_##id,
#define SLOT_NAME(id, name) name ","
enum { SLOTS(SLOT_ENUM) N_SLOTS };
const char *slot_names(void) { return SLOTS(SLOT_NAME); }

typedef struct {
    int64_t slot, n; /* n: elements of dst */
    void *dst;
} fold_t;

typedef struct { /* one batch: provenance of its N real rows, shared by every site */
    const uint8_t *keep;   /* (R,) 1 = real row, or NULL: no padding */
    const int64_t *rowmap; /* (N,) row index of each real row, or NULL (then N == R) */
    const int64_t *sample, *pos, *token; /* (N,) */
    int64_t n;
} batch_t;

/* Top-k provenance: the first channel holding a row's max finite |a| (topk.row_peaks). */
static int64_t row_argmax(const float *row, int64_t C) {
    int64_t best = 0;
    float top = -1.0f;
    for (int64_t c = 0; c < C; c++) {
        float a = fabsf(row[c]);
        if (FINITE(a) && a > top) top = a, best = c;
    }
    return best;
}

/* Top-k merge: the k best of the current entries and the N real rows of one batch, best
 * first by (absval descending, sample ascending, pos ascending): topk.select_top's order.
 * A row enters only if strictly better than the k-th entry; on equal keys the entry
 * already held stays first (a stable merge with the held entries first). Rows with
 * tok_abs -1 (no finite element) lose to empty slots (-1, sample -1). State is updated
 * in place. */
typedef struct {
    float *absval, *value;
    int64_t *sample, *pos, *channel, *token, k;
} topk_t;

static int worse(float a1, int64_t s1, int64_t p1, float a2, int64_t s2, int64_t p2) { /* 1 worse than 2 */
    if (a1 != a2) return a1 < a2;
    if (s1 != s2) return s1 > s2;
    return p1 > p2;
}

static void topk_merge(const float *x, int64_t C, const float *tok_abs, const batch_t *b, topk_t *s) {
    int64_t k = s->k;
    if (k < 1) return;
    for (int64_t r = 0; r < b->n; r++) {
        int64_t row = b->rowmap ? b->rowmap[r] : r;
        float a = tok_abs[row];
        int64_t smp = b->sample[r], pos = b->pos[r];
        if (!worse(s->absval[k - 1], s->sample[k - 1], s->pos[k - 1], a, smp, pos)) continue;
        int64_t i = k - 1; /* shift worse entries down, insert after the last not-worse one */
        while (i > 0 && worse(s->absval[i - 1], s->sample[i - 1], s->pos[i - 1], a, smp, pos)) {
            s->absval[i] = s->absval[i - 1], s->value[i] = s->value[i - 1], s->sample[i] = s->sample[i - 1];
            s->pos[i] = s->pos[i - 1], s->channel[i] = s->channel[i - 1], s->token[i] = s->token[i - 1];
            i--;
        }
        const float *xr = x + row * C;
        int64_t ch = row_argmax(xr, C);
        s->absval[i] = a, s->value[i] = xr[ch], s->sample[i] = smp, s->pos[i] = pos;
        s->channel[i] = ch, s->token[i] = b->token[r];
    }
}

/* Fold one batch of one site into the state tensors `folds` point to (native.py checks
 * each one's dtype and length; several may take the same slot, except the histogram and
 * the top-k arrays). Returns 0; -1 when out of memory, with nothing changed; -2 for a bad
 * fold list. */
int site_update(const float *x, int64_t R, int64_t C, const batch_t *b, const fold_t *folds, int nfolds,
                int threads) {
    int64_t *hist = NULL;
    void *tk[6] = {0};
    int64_t k = 0;
    for (int i = 0; i < nfolds; i++) {
        int64_t s = folds[i].slot;
        if (s < 0 || s >= N_SLOTS || !folds[i].dst) return -2;
        if (s == SLOT_HIST) {
            if (hist) return -2;
            hist = folds[i].dst;
        } else if (s >= SLOT_TOPK_ABSVAL) {
            if (tk[s - SLOT_TOPK_ABSVAL]) return -2;
            tk[s - SLOT_TOPK_ABSVAL] = folds[i].dst, k = folds[i].n;
        }
    }
    int topk = 0;
    for (int j = 0; j < 6; j++) topk += tk[j] != NULL;
    if (topk != 0 && topk != 6) return -2; /* all six top-k arrays, or none */

    float *tok_abs = malloc((R + 1) * sizeof(float));
    double *sums = malloc((2 * C + 1) * sizeof(double));
    pass_t ps;
    if (!tok_abs || !sums || pass(x, R, C, b->keep, tok_abs, threads, hist, 0, &ps) < 0) {
        free(tok_abs), free(sums);
        return -1;
    }
    const part_t *p = ps.parts[0];
    const int64_t n = b->n;
    double mom[5];
    chunk_sums(&ps, C, sums, sums + C, mom);
    for (int i = 0; i < nfolds; i++) {
        void *d = folds[i].dst;
        int64_t *i64 = d;
        double *f64 = d;
        float *f32 = d;
        switch (folds[i].slot) {
        case SLOT_ELEMENTS: *i64 += n * C; break;
        case SLOT_TOKENS: *i64 += n; break;
        case SLOT_MIN: *f64 = p->lo < *f64 ? p->lo : *f64; break;
        case SLOT_MAX: *f64 = p->hi > *f64 ? p->hi : *f64; break;
        case SLOT_CH_ABSMAX:
            for (int64_t c = 0; c < C; c++) f32[c] = p->ch_max[c] > f32[c] ? p->ch_max[c] : f32[c];
            break;
        case SLOT_CH_NONFINITE:
            for (int64_t c = 0; c < C; c++) i64[c] += p->ch_nonfinite[c];
            break;
        case SLOT_MOMENTS: moments_merge(f64, mom); break;
        case SLOT_CH_S1: case SLOT_CH_S2: {
            const double *src = sums + (folds[i].slot == SLOT_CH_S2 ? C : 0);
            for (int64_t c = 0; c < C; c++) f64[c] += src[c];
            break;
        }
        case SLOT_OVER_100: case SLOT_CANDIDATES: case SLOT_MASSIVE_ELEMENTS: case SLOT_MASSIVE_TOKENS:
        case SLOT_UNCHECKED: *i64 += p->si[folds[i].slot - SLOT_OVER_100]; break; /* si[4]: 0, all checked */
        case SLOT_CH_GE6:
            for (int64_t c = 0; c < C; c++) i64[c] += p->ch_ge6[c];
            break;
        case SLOT_CH_MASSIVE:
            for (int64_t c = 0; c < C; c++) i64[c] += p->ch_massive[c];
            break;
        case SLOT_SAMPLE_MAX: /* sample indices were checked against n_samples (native.py) */
            for (int64_t r = 0; r < n; r++) {
                float a = tok_abs[b->rowmap ? b->rowmap[r] : r];
                if (a > f32[b->sample[r]]) f32[b->sample[r]] = a;
            }
            break;
        default: break; /* the histogram was taken in the pass; top-k below */
        }
    }
    if (topk) {
        topk_t t = {tk[0], tk[1], tk[2], tk[3], tk[4], tk[5], k};
        topk_merge(x, C, tok_abs, b, &t);
    }
    free(tok_abs), free(sums), free(ps.cs);
    return 0;
}

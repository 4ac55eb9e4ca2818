/* One pass over a site's (R, C) float32 rows computing every per-batch partial the
 * statistics need (kernels.py states the contract; torch_partials is the same in torch).
 *
 * Rows are cut into fixed chunks that the OpenMP threads torch already runs take one at
 * a time (libgomp is found by its soname: torch's own thread pool). Dynamic scheduling
 * keeps a loaded machine from stalling on a descheduled thread. Counts, maxima and the
 * histogram are exact in any order; float64 sums are kept per chunk and added in chunk
 * order, so every result is independent of the thread count and of timing.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef NB /* native.py passes histogram.py's values */
#define NB 16384 /* histogram bins: sign, 8 exponent bits, 5 mantissa bits */
#define SHIFT 18 /* 23 - 5 mantissa bits */
#endif
#define MAXT 256
#define MAX_CHUNKS 32         /* float64 column sums are kept per chunk: bounded memory */
#define CHUNK_ELEMENTS 131072 /* at least this many elements per chunk (~0.2 ms of work) */
#ifdef _OPENMP
#include <omp.h>
#else /* built without OpenMP: one thread */
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_threads(void) { return 1; }
#endif
#define MASSIVE_ABS 100.0f
#define MASSIVE_RATIO 1000.0f
#define OUTLIER_ABS 6.0f

typedef struct {
    float *tok_abs, *mkey;   /* (R,) every row: max|a| (-1: padding or nonfinite); candidate key */
    float *ch_max;           /* (C,) max|a|, nan once a nan was seen */
    double *ch_s1, *ch_s2;   /* (C,) */
    int64_t *ch_ge6;         /* (C,) elements with |a| >= 6 */
    int64_t *ch_massive;     /* (C,) massive elements */
    int64_t *hist;           /* (NB,) */
    double *sd;              /* finite min, finite max, s1, s2, s3, s4 */
    int64_t *si;             /* tokens > 100, candidates, massive elements, massive tokens, unchecked */
} out_t;

typedef struct { /* one thread's share; exact in any order */
    float *ch_max; int64_t *ch_massive;
    uint32_t *ch_ge6; /* < R * C < 2**32 per call: 32 bits halve the traffic of the hot loop */
    uint32_t *h; /* 4 sub-histograms: consecutive equal bins do not stall on one counter */
    float *scratch;
    float lo, hi; /* finite min and max */
    int64_t si[5];
} part_t;

static int row_stats(const float *row, int64_t C, part_t *p, double *c1, double *c2, double *s, float *pmn,
                     float *pmx) {
    float mn = INFINITY, mx = -INFINITY;
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    int64_t nan = 0;
    float *chm = p->ch_max;
    uint32_t *g6 = p->ch_ge6;
#pragma omp simd reduction(min : mn) reduction(max : mx) reduction(+ : s1, s2, s3, s4, nan)
    for (int64_t c = 0; c < C; c++) {
        float v = row[c], a = fabsf(v), m = chm[c];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
        nan += v != v;
        double d = v, d2 = d * d; /* exact: the square of a float fits a double */
        s1 += d;
        s2 += d2;
        s3 += d2 * d;
        s4 += d2 * d2;
        c1[c] += d;
        c2[c] += d2;
        chm[c] = (a > m || a != a) ? a : m;
        g6[c] += a >= OUTLIER_ABS;
    }
    s[0] = s1, s[1] = s2, s[2] = s3, s[3] = s4;
    *pmn = nan ? NAN : mn;
    *pmx = nan ? NAN : mx;
    return nan != 0;
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

/* A token whose max|a| ta > 100: is its lower median <= ta / 1000 (then it may hold a
 * massive activation), and if so which elements are > 100 and >= 1000 x median.
 * 1000 x med <= a  <=>  #{c : 1000 x |x_c| <= a} >= need, because 1000 x y (in float) is
 * monotone in y; so each element > 100 is tested with one counting pass, exactly. Such
 * elements are few in a candidate token (at most half of them exceed ta / 1000); past
 * BIG_MAX the median is found by quickselect instead. */
#define BIG_MAX 8
static int massive_row(const float *row, int64_t C, float ta, part_t *p) {
    float t = ta / MASSIVE_RATIO;
    int64_t small = 0, need = (C - 1) / 2 + 1, hits = 0, big[BIG_MAX], nbig = 0;
#pragma omp simd reduction(+ : small)
    for (int64_t c = 0; c < C; c++) small += fabsf(row[c]) <= t;
    if (small < need) return 0;
    for (int64_t c = 0; c < C && nbig <= BIG_MAX; c++)
        if (fabsf(row[c]) > MASSIVE_ABS) {
            if (nbig < BIG_MAX) big[nbig] = c;
            nbig++;
        }
    if (nbig <= BIG_MAX) {
        for (int64_t i = 0; i < nbig; i++) {
            float a = fabsf(row[big[i]]);
            int64_t below = 0;
#pragma omp simd reduction(+ : below)
            for (int64_t c = 0; c < C; c++) below += MASSIVE_RATIO * fabsf(row[c]) <= a;
            if (below >= need) p->ch_massive[big[i]]++, hits++;
        }
    } else {
        if (!p->scratch) p->scratch = malloc(C * sizeof(float));
        if (!p->scratch) return -1;
        for (int64_t c = 0; c < C; c++) p->scratch[c] = fabsf(row[c]);
        float bar = MASSIVE_RATIO * kth_smallest(p->scratch, C, need - 1);
        for (int64_t c = 0; c < C; c++) {
            float a = fabsf(row[c]);
            int hit = a > MASSIVE_ABS && a >= bar;
            p->ch_massive[c] += hit;
            hits += hit;
        }
    }
    p->si[2] += hits;
    p->si[3] += hits > 0;
    return 1;
}

/* Rows [r0, r1): per-row outputs, this thread's exact partials, the chunk's float64 sums
 * cs = (ch_s1 (C), ch_s2 (C), s1, s2, s3, s4). */
static int rows(const float *x, int64_t C, int64_t r0, int64_t r1, const uint8_t *keep, out_t *o, part_t *p,
                double *cs) {
    for (int64_t r = r0; r < r1; r++) {
        o->tok_abs[r] = o->mkey[r] = -1.0f;
        if (keep && !keep[r]) continue;
        const float *row = x + r * C;
        double s[4];
        float mn, mx;
        int nan = row_stats(row, C, p, cs, cs + C, s, &mn, &mx);
        row_hist((const uint32_t *)row, C, p->h);
        for (int k = 0; k < 4; k++) cs[2 * C + k] += s[k];
        if (!nan && isfinite(mn) && mn < p->lo) p->lo = mn;
        if (!nan && isfinite(mx) && mx > p->hi) p->hi = mx;
        float ta = mx > -mn ? mx : -mn;
        if (nan || !isfinite(ta)) continue;
        o->tok_abs[r] = ta;
        if (ta > MASSIVE_ABS) {
            p->si[0]++;
            int m = massive_row(row, C, ta, p);
            if (m < 0) return -1;
            if (m) {
                o->mkey[r] = ta;
                p->si[1]++;
            }
        }
    }
    return 0;
}

static void part_free(part_t *p) {
    if (p) free(p->ch_max), free(p->ch_ge6), free(p->ch_massive), free(p->h), free(p->scratch), free(p);
}

static part_t *part_new(int64_t C) {
    part_t *p = calloc(1, sizeof(part_t));
    if (!p) return NULL;
    p->ch_max = calloc(C, sizeof(float)), p->ch_ge6 = calloc(C, sizeof(uint32_t));
    p->ch_massive = calloc(C, sizeof(int64_t)), p->h = calloc(4 * NB, sizeof(uint32_t));
    p->lo = INFINITY, p->hi = -INFINITY;
    if (!p->ch_max || !p->ch_ge6 || !p->ch_massive || !p->h) {
        part_free(p);
        return NULL;
    }
    return p;
}

static void merge(part_t *p0, const part_t *p, int64_t C) { /* max, min and integer sums */
    for (int64_t c = 0; c < C; c++) {
        float a = p->ch_max[c], m = p0->ch_max[c];
        p0->ch_max[c] = (a > m || a != a) ? a : m;
        p0->ch_ge6[c] += p->ch_ge6[c], p0->ch_massive[c] += p->ch_massive[c];
    }
    for (int b = 0; b < 4 * NB; b++) p0->h[b] += p->h[b];
    if (p->lo < p0->lo) p0->lo = p->lo;
    if (p->hi > p0->hi) p0->hi = p->hi;
    for (int k = 0; k < 5; k++) p0->si[k] += p->si[k];
}

static void finish(part_t *p, const double *cs, int64_t chunks, int64_t C, out_t *o) {
    memcpy(o->ch_max, p->ch_max, C * sizeof(float));
    for (int64_t c = 0; c < C; c++) o->ch_ge6[c] = p->ch_ge6[c];
    memcpy(o->ch_massive, p->ch_massive, C * sizeof(int64_t));
    for (int b = 0; b < NB; b++)
        o->hist[b] = (int64_t)p->h[b] + p->h[NB + b] + p->h[2 * NB + b] + p->h[3 * NB + b];
    memset(o->ch_s1, 0, C * sizeof(double)), memset(o->ch_s2, 0, C * sizeof(double));
    double s[4] = {0, 0, 0, 0};
    for (int64_t k = 0; k < chunks; k++) { /* chunk order: independent of threads */
        const double *c = cs + k * (2 * C + 4);
        for (int64_t j = 0; j < C; j++) o->ch_s1[j] += c[j], o->ch_s2[j] += c[C + j];
        for (int j = 0; j < 4; j++) s[j] += c[2 * C + j];
    }
    o->sd[0] = p->lo, o->sd[1] = p->hi;
    for (int j = 0; j < 4; j++) o->sd[2 + j] = s[j];
    memcpy(o->si, p->si, sizeof(p->si));
    o->si[4] = 0; /* every candidate token was checked */
}

/* x: (R, C) row-major; keep: (R,) 1 = real token, or NULL. Returns 0, or -1 when out of
 * memory (the caller then uses the torch implementation). Elements per call < 2**32. */
int site_partials(const float *x, int64_t R, int64_t C, const uint8_t *keep, out_t *o, int threads) {
    int64_t per = CHUNK_ELEMENTS / (C > 0 ? C : 1), least = (R + MAX_CHUNKS - 1) / MAX_CHUNKS;
    int64_t rpc = per > least ? per : least;
    if (rpc < 1) rpc = 1;
    int64_t chunks = (R + rpc - 1) / rpc;
    int T = threads < 1 ? 1 : (threads > MAXT ? MAXT : threads), failed = 0;
    if (chunks < T) T = chunks > 0 ? (int)chunks : 1;
    double *cs = calloc(chunks * (2 * C + 4) + 1, sizeof(double));
    part_t *parts[MAXT] = {0};
    if (!cs) return -1;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        int t = omp_get_thread_num();
        part_t *p = part_new(C);
        parts[t] = p;
#pragma omp for schedule(dynamic, 1)
        for (int64_t k = 0; k < chunks; k++) {
            int64_t r1 = (k + 1) * rpc < R ? (k + 1) * rpc : R;
            if (!p || rows(x, C, k * rpc, r1, keep, o, p, cs + k * (2 * C + 4)) < 0) {
#pragma omp atomic write
                failed = 1;
            }
        }
    }
    part_t *p0 = NULL;
    for (int t = 0; t < MAXT && !failed; t++) {
        if (!parts[t]) continue;
        if (!p0) p0 = parts[t];
        else merge(p0, parts[t], C);
    }
    if (!failed && p0) finish(p0, cs, chunks, C, o);
    for (int t = 0; t < MAXT; t++) part_free(parts[t]);
    free(cs);
    return failed || !p0 ? -1 : 0;
}

/* Top-k provenance: the first channel holding a row's max|a| (the first nan, if any:
 * torch.argmax semantics). */
static int64_t row_argmax(const float *row, int64_t C) {
    int64_t best = 0;
    float top = -1.0f;
    for (int64_t c = 0; c < C; c++) {
        float a = fabsf(row[c]);
        if (a != a) return c;
        if (a > top) top = a, best = c;
    }
    return best;
}

/* Top-k merge: the k best of the current entries and the N rows of one batch, best first
 * by (absval descending, sample ascending, pos ascending): topk.select_top's order. A row
 * enters only if strictly better than the k-th entry; on equal keys the entry already held
 * stays first (a stable merge with the held entries first). Rows with tok_abs -1 (padding,
 * inf, nan) lose to empty slots (-1, sample -1). rowmap: full-row index of each row, or
 * NULL when they coincide; x: (full rows, C). State arrays are updated in place. */
static int worse(float a1, int64_t s1, int64_t p1, float a2, int64_t s2, int64_t p2) { /* 1 worse than 2 */
    if (a1 != a2) return a1 < a2;
    if (s1 != s2) return s1 > s2;
    return p1 > p2;
}

int64_t topk_merge(const float *x, int64_t C, const float *tok_abs, int64_t N, const int64_t *rowmap,
                   const int64_t *sample, const int64_t *pos, const int64_t *token, int64_t k, float *absval,
                   float *value, int64_t *s_sample, int64_t *s_pos, int64_t *s_channel, int64_t *s_token) {
    int64_t entered = 0;
    for (int64_t r = 0; r < N; r++) {
        float a = tok_abs[r];
        if (k < 1 || !worse(absval[k - 1], s_sample[k - 1], s_pos[k - 1], a, sample[r], pos[r])) continue;
        int64_t i = k - 1; /* shift worse entries down, insert after the last not-worse one */
        while (i > 0 && worse(absval[i - 1], s_sample[i - 1], s_pos[i - 1], a, sample[r], pos[r])) {
            absval[i] = absval[i - 1], value[i] = value[i - 1], s_sample[i] = s_sample[i - 1];
            s_pos[i] = s_pos[i - 1], s_channel[i] = s_channel[i - 1], s_token[i] = s_token[i - 1];
            i--;
        }
        const float *row = x + (rowmap ? rowmap[r] : r) * C;
        int64_t ch = row_argmax(row, C);
        absval[i] = a, value[i] = row[ch], s_sample[i] = sample[r], s_pos[i] = pos[r];
        s_channel[i] = ch, s_token[i] = token[r];
        entered++;
    }
    return entered;
}

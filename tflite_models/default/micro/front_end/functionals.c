/* nsl-ser functionals head (nsl_ser/c/functionals.c, copied by nsl_ser/export/micro_functionals.py).
 * Portable C99, no dynamic allocation. Not thread-safe: static scratch. */
#include "functionals.h"

#include <math.h>

static int g_idx[NSL_FX_MAX_FRAMES];
static double g_buf[NSL_FX_MAX_FRAMES];
static double g_e[NSL_FX_MAX_FRAMES];
static float g_scale[NSL_FX_NUM];
static float g_shift[NSL_FX_NUM];
static int g_calibrated = 0;

void nsl_fx_set_calibration(const float* scale, const float* shift) {
  int i;
  if (scale == 0 || shift == 0) {
    g_calibrated = 0;
    return;
  }
  for (i = 0; i < NSL_FX_NUM; ++i) {
    g_scale[i] = scale[i];
    g_shift[i] = shift[i];
  }
  g_calibrated = 1;
}

/* The k-th smallest of x[0..n) (0-based) by quickselect (median-of-three
 * pivot, Hoare partition); reorders x so that x[k] holds it and every
 * x[k+1..n) is >= it. The same number sorting would give. */
static double select_kth(double* x, int n, int k) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    double a = x[lo], b = x[mid], c = x[hi], pivot;
    int i = lo, j = hi;
    pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
    while (i <= j) {
      while (x[i] < pivot) ++i;
      while (x[j] > pivot) --j;
      if (i <= j) {
        const double t = x[i];
        x[i] = x[j];
        x[j] = t;
        ++i;
        --j;
      }
    }
    if (k <= j) {
      hi = j;
    } else if (k >= i) {
      lo = i;
    } else {
      break;  /* x[j+1..i) all equal the pivot */
    }
  }
  return x[k];
}

/* numpy's default (linear) percentile of x[0..n), n >= 1; reorders x */
static double percentile(double* x, int n, double p) {
  const double pos = p / 100.0 * (n - 1);
  const int lo = (int)floor(pos);
  const double frac = pos - lo, a = select_kth(x, n, lo);
  double b;
  int i;
  if (lo + 1 >= n) return a;
  for (b = x[lo + 1], i = lo + 2; i < n; ++i) if (x[i] < b) b = x[i];
  return a + frac * (b - a);
}

/* least-squares coefficients of t = i / (n - 1) - mean and of t^2 - mean
 * for x[0..n) (functionals.regression) */
static void regression(const double* x, int n, double mean, double* lin,
                       double* quad) {
  double tm = 0.0, qm = 0.0, tt = 0.0, qq = 0.0, tx = 0.0, qx = 0.0;
  const double scale = n > 1 ? 1.0 / (n - 1) : 1.0;
  int i;
  for (i = 0; i < n; ++i) tm += i * scale;
  tm /= n;
  for (i = 0; i < n; ++i) qm += (i * scale - tm) * (i * scale - tm);
  qm /= n;
  for (i = 0; i < n; ++i) {
    const double t = i * scale - tm, q = t * t - qm, c = x[i] - mean;
    tt += t * t;
    qq += q * q;
    tx += t * c;
    qx += q * c;
  }
  *lin = tx / (tt > NSL_FX_EPS ? tt : NSL_FX_EPS);
  *quad = qx / (qq > NSL_FX_EPS ? qq : NSL_FX_EPS);
}

static void mean_std(const double* x, int n, double* mean, double* std) {
  double m = 0.0, v = 0.0;
  int i;
  for (i = 0; i < n; ++i) m += x[i];
  m /= n;
  for (i = 0; i < n; ++i) v += (x[i] - m) * (x[i] - m);
  *mean = m;
  *std = sqrt(v / n);
}

int nsl_fx_compute(const float* features, int num_frames, float* out) {
  const int nb = NSL_FX_NUM_BANDS;
  const double ten_over_ln10 = 10.0 / log(10.0);
  double max_db = -HUGE_VAL;
  int f, b, k, n = 0, i;
  if (num_frames > NSL_FX_MAX_FRAMES) num_frames = NSL_FX_MAX_FRAMES;
  /* frame power in dB (log-sum-exp over bands); speech: within TOP_DB of the loudest */
  for (f = 0; f < num_frames; ++f) {
    const float* x = features + f * nb;
    double peak = x[0], s = 0.0;
    for (b = 1; b < nb; ++b) if (x[b] > peak) peak = x[b];
    for (b = 0; b < nb; ++b) s += exp(x[b] - peak);
    g_buf[f] = ten_over_ln10 * (log(s) + peak);
    if (g_buf[f] > max_db) max_db = g_buf[f];
  }
  for (f = 0; f < num_frames; ++f)
    if (g_buf[f] >= max_db - NSL_FX_TOP_DB) g_idx[n++] = f;
  for (i = 0; i < n; ++i) g_e[i] = 0.0;
  for (b = 0; b < nb; ++b) {
    double mean, std, dmean, dstd, dabs = 0.0, lin, quad;
    for (i = 0; i < n; ++i) {
      g_buf[i] = features[g_idx[i] * nb + b];
      g_e[i] += g_buf[i] / nb;
    }
    mean_std(g_buf, n, &mean, &std);
    regression(g_buf, n, mean, &lin, &quad);
    if (n > 1) {
      for (i = 0; i + 1 < n; ++i) {
        g_buf[i] = (double)features[g_idx[i + 1] * nb + b] - features[g_idx[i] * nb + b];
        dabs += fabs(g_buf[i]);
      }
      mean_std(g_buf, n - 1, &dmean, &dstd);
      dabs /= (n - 1);
    } else {
      dmean = dstd = 0.0;
    }
    for (i = 0; i < n; ++i) g_buf[i] = features[g_idx[i] * nb + b];
    out[b] = (float)mean;
    out[nb + b] = (float)std;
    out[2 * nb + b] = (float)percentile(g_buf, n, 10.0);
    out[3 * nb + b] = (float)percentile(g_buf, n, 50.0);
    out[4 * nb + b] = (float)percentile(g_buf, n, 90.0);
    out[5 * nb + b] = (float)dmean;
    out[6 * nb + b] = (float)dstd;
    out[7 * nb + b] = (float)dabs;
    out[8 * nb + b] = (float)lin;
    out[9 * nb + b] = (float)quad;
  }
  for (k = 0; k < NSL_FX_NUM_CEPSTRA; ++k) {  /* spread of each cepstrum */
    const float* row = nsl_fx_dct + k * nb;
    double cmean, cstd;
    for (i = 0; i < n; ++i) {
      const float* x = features + g_idx[i] * nb;
      double c = 0.0;
      for (b = 0; b < nb; ++b) c += (double)row[b] * x[b];
      g_buf[i] = c;
    }
    mean_std(g_buf, n, &cmean, &cstd);
    out[10 * nb + k] = (float)cstd;
  }
  {
    const int o = 10 * nb + NSL_FX_NUM_CEPSTRA;
    double emean, estd;
    mean_std(g_e, n, &emean, &estd);
    out[o] = (float)estd;
    out[o + 1] = (float)(percentile(g_e, n, 90.0) - percentile(g_e, n, 10.0));
    out[o + 2] = (float)(n * NSL_FX_HOP_S);
  }
  return n;
}

void nsl_fx_probs(const float* functionals, float* probs) {
  double logits[NSL_FX_NUM_CLASSES], top = -HUGE_VAL, sum = 0.0;
  int c, i;
  for (c = 0; c < NSL_FX_NUM_CLASSES; ++c) logits[c] = nsl_fx_intercept[c];
  for (i = 0; i < NSL_FX_NUM; ++i) {
    double x = functionals[i];
    if (g_calibrated) x = x * g_scale[i] + g_shift[i];
    x = (x - nsl_fx_mean[i]) * nsl_fx_inv_std[i];
    for (c = 0; c < NSL_FX_NUM_CLASSES; ++c)
      logits[c] += nsl_fx_coef[c * NSL_FX_NUM + i] * x;
  }
  for (c = 0; c < NSL_FX_NUM_CLASSES; ++c) if (logits[c] > top) top = logits[c];
  for (c = 0; c < NSL_FX_NUM_CLASSES; ++c) sum += (logits[c] = exp(logits[c] - top));
  for (c = 0; c < NSL_FX_NUM_CLASSES; ++c) probs[c] = (float)(logits[c] / sum);
}

void nsl_fx_fuse(const float* head_probs, float* exit_probs) {
  double q[NSL_FX_NUM_CLASSES], sum = 0.0;
  int c;
  for (c = 0; c < NSL_FX_NUM_CLASSES; ++c)
    sum += (q[c] = ((double)exit_probs[c] + NSL_FX_EPS) * ((double)head_probs[c] + NSL_FX_EPS));
  for (c = 0; c < NSL_FX_NUM_CLASSES; ++c) exit_probs[c] = (float)(q[c] / sum);
}

void nsl_fx_fuse_exit(const float* head_probs, float* exit_probs, int exit_index) {
  double z[NSL_FX_NUM_CLASSES], top = -1e300, sum = 0.0, t;
  int c;
  nsl_fx_fuse(head_probs, exit_probs);
  if (exit_index < 0 || exit_index >= NSL_FX_NUM_TEMPERATURES) return;
  t = (double)nsl_fx_temperature[exit_index];
  if (t == 1.0) return;
  for (c = 0; c < NSL_FX_NUM_CLASSES; ++c) {
    double p = (double)exit_probs[c];
    z[c] = log(p < NSL_FX_TEMPERATURE_EPS ? NSL_FX_TEMPERATURE_EPS : p) / t;
    if (z[c] > top) top = z[c];
  }
  for (c = 0; c < NSL_FX_NUM_CLASSES; ++c) sum += (z[c] = exp(z[c] - top));
  for (c = 0; c < NSL_FX_NUM_CLASSES; ++c) exit_probs[c] = (float)(z[c] / sum);
}

/* nsl-ser per-frame prosody front end (see prosody.h): the YIN of
 * de Cheveigne & Kawahara (2002) on a fixed integration window, as
 * nsl_ser/prosody.py's _yin_block, in float32 with the difference function
 * computed directly instead of through an FFT. */
#include "prosody.h"

#include <math.h>

#if NSL_PR_WINDOW < NSL_PR_TAU_MAX / 2 || NSL_PR_TAU_MIN < 2 || \
    NSL_PR_TAU_MIN > NSL_PR_TAU_MAX
#error "NSL_PR_FRAME_LEN too short for NSL_PR_TAU_MAX, or bad lag range"
#endif

#define NSL_PR_TINY 1e-20f

/* sum_{j < NSL_PR_WINDOW} x[j + lag]^2 */
static float window_energy(const float* x, int lag) {
  float s = 0.0f;
  int j;
  for (j = 0; j < NSL_PR_WINDOW; ++j) s += x[j + lag] * x[j + lag];
  return s;
}

void nsl_pr_analyze(const float* x, float* scratch, nsl_pr_frame_t* out) {
  float* d = scratch;                 /* difference function, lag 0..LAGS-1 */
  float* cmnd = scratch + NSL_PR_LAGS; /* cumulative mean normalised d */
  const float e0 = window_energy(x, 0);
  float csum = 0.0f, total = 0.0f;
  float a, b, c, den, shift, d_min, energy, rho, abs_shift;
  int tau, j, k = -1, gmin = NSL_PR_TAU_MIN, k2;

  for (j = 0; j < NSL_PR_FRAME_LEN; ++j) total += x[j] * x[j];
  out->rms_db = 10.0f * log10f(total / (float)NSL_PR_FRAME_LEN + NSL_PR_TINY);

  /* d(tau) = sum_{j<W} (x_j - x_{j+tau})^2 and
   * d'(tau) = d(tau) * tau / sum_{t=1..tau} d(t) (1 where undefined) */
  d[0] = 0.0f;
  cmnd[0] = 1.0f;
  for (tau = 1; tau < NSL_PR_LAGS; ++tau) {
    float s = 0.0f;
    for (j = 0; j < NSL_PR_WINDOW; ++j) {
      const float diff = x[j] - x[j + tau];
      s += diff * diff;
    }
    d[tau] = s;
    csum += s;
    cmnd[tau] = csum > 1e-12f * (e0 + NSL_PR_TINY) ? s * (float)tau / csum : 1.0f;
  }

  /* the first local minimum below the threshold, else the global minimum */
  for (tau = NSL_PR_TAU_MIN; tau <= NSL_PR_TAU_MAX; ++tau) {
    const float v = cmnd[tau];
    if (v < cmnd[gmin]) gmin = tau;
    if (k < 0 && v < NSL_PR_THRESHOLD && v < cmnd[tau - 1] && v <= cmnd[tau + 1])
      k = tau;
  }
  if (k < 0) k = gmin;

  /* parabolic interpolation of the raw difference function around k */
  a = d[k - 1];
  b = d[k];
  c = d[k + 1];
  den = a - 2.0f * b + c;
  shift = den > 0.0f ? 0.5f * (a - c) / den : 0.0f;
  if (shift < -1.0f) shift = -1.0f;
  if (shift > 1.0f) shift = 1.0f;
  out->period = (float)k + shift;
  out->f0 = (float)NSL_PR_SAMPLE_RATE / out->period;
  out->periodicity = 1.0f - cmnd[gmin];
  if (out->periodicity < 0.0f) out->periodicity = 0.0f;
  if (out->periodicity > 1.0f) out->periodicity = 1.0f;

  /* rho = 1 - d(T) / (e(0) + e(T)) at the refined period */
  d_min = b - 0.25f * (a - c) * shift;
  if (d_min < 0.0f) d_min = 0.0f;
  abs_shift = fabsf(shift);
  k2 = shift < 0.0f ? k - 1 : k + 1;
  energy = e0 + window_energy(x, k) * (1.0f - abs_shift)
           + window_energy(x, k2) * abs_shift;
  rho = energy > NSL_PR_TINY ? 1.0f - d_min / energy : 0.0f;
  if (rho < NSL_PR_RHO_CLIP) rho = NSL_PR_RHO_CLIP;
  if (rho > 1.0f - NSL_PR_RHO_CLIP) rho = 1.0f - NSL_PR_RHO_CLIP;
  out->rho = rho;
  out->hnr_db = 10.0f * log10f(rho / (1.0f - rho));
}

int nsl_pr_voiced(const nsl_pr_frame_t* f, float ref_db) {
  return f->periodicity > 1.0f - NSL_PR_VOICING_THRESHOLD &&
         f->rms_db >= ref_db - NSL_PR_GATE_DB && f->rms_db > NSL_PR_FLOOR_DB;
}

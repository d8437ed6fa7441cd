/* nsl-ser log-Mel front end (nsl_ser/c/front_end.c, copied by nsl_ser/export/micro_front_end.py).
 * Portable C99, float32, no dynamic allocation. Not thread-safe: one
 * static scratch frame. */
#include "front_end.h"

#include <math.h>
#include <string.h>

static float g_re[NSL_FE_FFT_HALF];
static float g_im[NSL_FE_FFT_HALF];
static float g_scale[NSL_FE_NUM_BANDS];
static float g_shift[NSL_FE_NUM_BANDS];
static int g_calibrated = 0;

void nsl_fe_set_calibration(const float* scale, const float* shift) {
  int b;
  if (scale == 0 || shift == 0) {
    g_calibrated = 0;
    return;
  }
  for (b = 0; b < NSL_FE_NUM_BANDS; ++b) {
    g_scale[b] = scale[b];
    g_shift[b] = shift[b];
  }
  g_calibrated = 1;
}

static float gain_of_peak(float peak) {
  if (!NSL_FE_PEAK_NORMALIZE) return 1.0f;
  return 1.0f / (peak > NSL_FE_PEAK_FLOOR ? peak : NSL_FE_PEAK_FLOOR);
}

float nsl_fe_gain(const float* audio, int num_samples) {
  float peak = 0.0f;
  int i;
  for (i = 0; i < num_samples; ++i) {
    float a = fabsf(audio[i]);
    if (a > peak) peak = a;
  }
  return gain_of_peak(peak);
}

/* In-place radix-2 complex FFT of NSL_FE_FFT_HALF points; twiddles
 * exp(-2 pi i k / FFT_LENGTH) at even k. */
static void fft_half(float* re, float* im) {
  const int n = NSL_FE_FFT_HALF;
  int i, j, len;
  for (i = 1, j = 0; i < n; ++i) {
    int bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      float t = re[i]; re[i] = re[j]; re[j] = t;
      t = im[i]; im[i] = im[j]; im[j] = t;
    }
  }
  for (len = 2; len <= n; len <<= 1) {
    const int step = (NSL_FE_FFT_LENGTH / len);
    int start, k;
    for (start = 0; start < n; start += len) {
      for (k = 0; k < len / 2; ++k) {
        const float wr = nsl_fe_cos[k * step], wi = -nsl_fe_sin[k * step];
        const int a = start + k, b = a + len / 2;
        const float xr = re[b] * wr - im[b] * wi;
        const float xi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - xr; im[b] = im[a] - xi;
        re[a] += xr; im[a] += xi;
      }
    }
  }
}

/* Mel power of one frame at unit gain: a gain g scales it by g * g, which
 * log_bands applies, so frames can be computed before the window's peak
 * is known. */
static void frame_power(const float* samples, float* mel_out) {
  const int half = NSL_FE_FFT_HALF;
  int n, k, b;
  /* pack the windowed, zero-padded real frame as half-length complex */
  for (n = 0; n < half; ++n) {
    const int e = 2 * n, o = 2 * n + 1;
    g_re[n] = e < NSL_FE_FRAME_LENGTH ? samples[e] * nsl_fe_window[e] : 0.0f;
    g_im[n] = o < NSL_FE_FRAME_LENGTH ? samples[o] * nsl_fe_window[o] : 0.0f;
  }
  fft_half(g_re, g_im);
  for (b = 0; b < NSL_FE_NUM_BANDS; ++b) mel_out[b] = 0.0f;
  /* split step: X[k] = (Z[k] + conj Z[h-k]) / 2 - i W^k (Z[k] - conj Z[h-k]) / 2 */
  for (k = NSL_FE_FIRST_BIN; k < NSL_FE_LAST_BIN; ++k) {
    const int a = k % half, c = (half - k) % half;
    const float er = 0.5f * (g_re[a] + g_re[c]), ei = 0.5f * (g_im[a] - g_im[c]);
    const float dr = 0.5f * (g_re[a] - g_re[c]), di = 0.5f * (g_im[a] + g_im[c]);
    const float wr = nsl_fe_cos[k], wi = -nsl_fe_sin[k];
    /* X = E - i W D, with W D = (wr dr - wi di) + i (wr di + wi dr) */
    const float xr = er + (wr * di + wi * dr);
    const float xi = ei - (wr * dr - wi * di);
    const float power = xr * xr + xi * xi;
    const int first = nsl_fe_bin_first_band[k - NSL_FE_FIRST_BIN];
    const int count = nsl_fe_bin_bands[k - NSL_FE_FIRST_BIN];
    const int offset = nsl_fe_bin_offset[k - NSL_FE_FIRST_BIN];
    int j;
    for (j = 0; j < count; ++j) {
      mel_out[first + j] += power * nsl_fe_weights[offset + j];
    }
  }
}

/* In place over frames x bands: log(power * gain^2 + floor), then the
 * calibration. */
static void log_bands(float* mel, float gain, int frames) {
  const float g2 = gain * gain;
  int i, b;
  for (i = 0; i < frames; ++i, mel += NSL_FE_NUM_BANDS) {
    for (b = 0; b < NSL_FE_NUM_BANDS; ++b) {
      const float x = logf(mel[b] * g2 + NSL_FE_LOG_FLOOR);
      mel[b] = g_calibrated ? x * g_scale[b] + g_shift[b] : x;
    }
  }
}

void nsl_fe_compute(const float* audio, float* features) {
  int f;
  for (f = 0; f < NSL_FE_NUM_FRAMES; ++f) {
    frame_power(audio + f * NSL_FE_FRAME_STEP, features + f * NSL_FE_NUM_BANDS);
  }
  log_bands(features, nsl_fe_gain(audio, NSL_FE_CLIP_SAMPLES), NSL_FE_NUM_FRAMES);
}

size_t nsl_fe_stream_bytes(void) { return sizeof(nsl_fe_stream_t); }

void nsl_fe_stream_reset(nsl_fe_stream_t* s) {
  s->peak = 0.0f;
  s->held = s->samples = s->frames = 0;
  s->ready = 0;
}

int nsl_fe_stream_push(nsl_fe_stream_t* s, const float* samples, int count) {
  int i;
  for (i = 0; i < count && s->samples < NSL_FE_CLIP_SAMPLES; ++i) {
    const float a = fabsf(samples[i]);
    ++s->samples;
    if (a > s->peak) s->peak = a;
    if (s->frames == NSL_FE_NUM_FRAMES) continue;  /* the peak still counts */
    s->tail[s->held++] = samples[i];
    if (s->held == NSL_FE_FRAME_LENGTH) {
      frame_power(s->tail, s->mel + s->frames * NSL_FE_NUM_BANDS);
      ++s->frames;
      memmove(s->tail, s->tail + NSL_FE_FRAME_STEP,
              (NSL_FE_FRAME_LENGTH - NSL_FE_FRAME_STEP) * sizeof(float));
      s->held -= NSL_FE_FRAME_STEP;
    }
  }
  return s->frames;
}

const float* nsl_fe_stream_features(nsl_fe_stream_t* s) {
  if (s->samples < NSL_FE_CLIP_SAMPLES) return 0;
  if (!s->ready) {
    log_bands(s->mel, gain_of_peak(s->peak), NSL_FE_NUM_FRAMES);
    s->ready = 1;
  }
  return s->mel;
}

void nsl_fe_quantize(const float* features, int count, int8_t* out) {
  int i;
  for (i = 0; i < count; ++i) {
    float q = rintf(features[i] / NSL_FE_INPUT_SCALE) + NSL_FE_INPUT_ZERO_POINT;
    out[i] = (int8_t)(q < -128.0f ? -128.0f : (q > 127.0f ? 127.0f : q));
  }
}

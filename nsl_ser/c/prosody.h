/* nsl-ser per-frame prosody front end: YIN F0, periodicity, energy and the
 * HNR proxy of one frame, as nsl_ser/prosody.py's yin_frames / track_f0
 * compute them (the tests compare the two on a real clip).
 *
 * Portable C99, float32, no dynamic allocation, no static state: the caller
 * provides NSL_PR_SCRATCH_FLOATS floats of scratch (2.1 KB by default), so
 * the code is reentrant. Cost: the difference function is computed
 * directly, (NSL_PR_TAU_MAX + 1) * NSL_PR_WINDOW multiply-adds a frame
 * (about 100 k at the defaults, 10 M a second at a 10 ms hop).
 *
 * Frame i of a signal is samples [i * NSL_PR_HOP, i * NSL_PR_HOP +
 * NSL_PR_FRAME_LEN). The defaults (16 kHz, 40 ms frames, 60-500 Hz) may be
 * overridden with -D; they must then match the Python side's arguments. */
#ifndef NSL_SER_PROSODY_H_
#define NSL_SER_PROSODY_H_

#ifdef __cplusplus
extern "C" {
#endif

#ifndef NSL_PR_SAMPLE_RATE
#define NSL_PR_SAMPLE_RATE 16000
#endif
#ifndef NSL_PR_FRAME_LEN
#define NSL_PR_FRAME_LEN 640 /* 40 ms */
#endif
#ifndef NSL_PR_HOP
#define NSL_PR_HOP 160 /* 10 ms */
#endif
/* lags searched: floor(sr / fmax) .. ceil(sr / fmin), fmin 60 Hz, fmax 500 Hz */
#ifndef NSL_PR_TAU_MIN
#define NSL_PR_TAU_MIN 32
#endif
#ifndef NSL_PR_TAU_MAX
#define NSL_PR_TAU_MAX 267
#endif
/* YIN's absolute threshold on the cumulative mean normalised difference */
#ifndef NSL_PR_THRESHOLD
#define NSL_PR_THRESHOLD 0.1f
#endif
/* voiced: periodicity > 1 - NSL_PR_VOICING_THRESHOLD, RMS within
 * NSL_PR_GATE_DB of a reference level (the loudest frame) and above
 * NSL_PR_FLOOR_DB dBFS */
#ifndef NSL_PR_VOICING_THRESHOLD
#define NSL_PR_VOICING_THRESHOLD 0.4f
#endif
#ifndef NSL_PR_GATE_DB
#define NSL_PR_GATE_DB 40.0f
#endif
#ifndef NSL_PR_FLOOR_DB
#define NSL_PR_FLOOR_DB -90.0f
#endif
/* rho is clipped to [NSL_PR_RHO_CLIP, 1 - NSL_PR_RHO_CLIP]: HNR within +-30 dB */
#define NSL_PR_RHO_CLIP 1e-3f

/* samples of the integration window, and lags of the difference function */
#define NSL_PR_WINDOW (NSL_PR_FRAME_LEN - NSL_PR_TAU_MAX - 1)
#define NSL_PR_LAGS (NSL_PR_TAU_MAX + 2)
#define NSL_PR_SCRATCH_FLOATS (2 * NSL_PR_LAGS)

typedef struct {
  float period;      /* refined period, samples (every frame) */
  float f0;          /* NSL_PR_SAMPLE_RATE / period, Hz (voiced or not) */
  float periodicity; /* 1 - min CMND over the lags, in [0, 1] */
  float rho;         /* normalised correlation at the period, clipped */
  float hnr_db;      /* 10 log10(rho / (1 - rho)) */
  float rms_db;      /* RMS of the frame, dB re full scale 1.0 */
} nsl_pr_frame_t;

/* Analyses NSL_PR_FRAME_LEN samples of `frame` into `out`, using
 * NSL_PR_SCRATCH_FLOATS floats of `scratch`. */
void nsl_pr_analyze(const float* frame, float* scratch, nsl_pr_frame_t* out);

/* 1 if the frame is voiced against the reference level `ref_db` (the
 * clip's loudest frame's rms_db, as prosody.track_f0; a streaming caller
 * may pass a running maximum), else 0. */
int nsl_pr_voiced(const nsl_pr_frame_t* frame, float ref_db);

#ifdef __cplusplus
}
#endif

#endif /* NSL_SER_PROSODY_H_ */

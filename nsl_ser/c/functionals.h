/* nsl-ser functionals head (nsl_ser/c/functionals.h, filled in by nsl_ser/export/micro_functionals.py).
 *
 *   float f[NSL_FX_NUM], q[NSL_FX_NUM_CLASSES];
 *   nsl_fx_compute(features, num_frames, f);   (uncalibrated log-Mel)
 *   nsl_fx_probs(f, q);                         (head probabilities)
 *   nsl_fx_fuse_exit(q, exit_probs, k);         (exit k = 0..K-1, before tau)
 *
 * nsl_fx_fuse_exit is the product of experts (nsl_fx_fuse) followed by
 * exit k's temperature, softmax(log p / T_k) (nsl_fx_temperature, the
 * sidecar's temperature.per_exit; 1 = none), as nsl-ser predict does.
 * nsl_fx_set_calibration(scale, shift) maps a calibrated speaker's
 * functionals (x * scale + shift per functional; NULL resets). */
#ifndef NSL_SER_FUNCTIONALS_H_
#define NSL_SER_FUNCTIONALS_H_

/* @DEFINES@: the model's constants, written by the export */

#ifdef __cplusplus
extern "C" {
#endif

extern const float nsl_fx_coef[NSL_FX_NUM_CLASSES * NSL_FX_NUM];
extern const float nsl_fx_intercept[NSL_FX_NUM_CLASSES];
extern const float nsl_fx_mean[NSL_FX_NUM];
extern const float nsl_fx_inv_std[NSL_FX_NUM];
extern const float nsl_fx_dct[NSL_FX_NUM_CEPSTRA * NSL_FX_NUM_BANDS];
extern const float nsl_fx_temperature[NSL_FX_NUM_TEMPERATURES];

/* Returns the number of speech frames used. */
int nsl_fx_compute(const float* features, int num_frames, float* out);
void nsl_fx_set_calibration(const float* scale, const float* shift);
void nsl_fx_probs(const float* functionals, float* probs);
void nsl_fx_fuse(const float* head_probs, float* exit_probs);
void nsl_fx_fuse_exit(const float* head_probs, float* exit_probs, int exit_index);

#ifdef __cplusplus
}
#endif

#endif  /* NSL_SER_FUNCTIONALS_H_ */

/* nsl-ser log-Mel front end (nsl_ser/c/front_end.h, filled in by nsl_ser/export/micro_front_end.py).
 *
 *   float features[NSL_FE_NUM_FRAMES * NSL_FE_NUM_BANDS];
 *   int8_t input[NSL_FE_NUM_FRAMES * NSL_FE_NUM_BANDS];
 *   nsl_fe_set_calibration(scale, shift);   // optional, per speaker
 *   nsl_fe_compute(audio, features);        // NSL_FE_CLIP_SAMPLES floats
 *   nsl_fe_quantize(features, NSL_FE_NUM_FRAMES * NSL_FE_NUM_BANDS, input);
 *   // input -> stage 1 (micro/stage_1_int8.tflite)
 *
 * Streaming, as the audio arrives (no window of audio held: the state is
 * the window's Mel power, NSL_FE_NUM_FRAMES x NSL_FE_NUM_BANDS floats):
 *   static nsl_fe_stream_t stream;
 *   nsl_fe_stream_reset(&stream);
 *   nsl_fe_stream_push(&stream, samples, count);  // any count, repeatedly
 *   const float* f = nsl_fe_stream_features(&stream);  // NULL until
 *   // NSL_FE_CLIP_SAMPLES samples were pushed; then the same features as
 *   // nsl_fe_compute, in place in the stream (the peak normalisation
 *   // enters at this step, exactly)
 */
#ifndef NSL_SER_FRONT_END_H_
#define NSL_SER_FRONT_END_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NSL_FE_SAMPLE_RATE 16000
#define NSL_FE_CLIP_SAMPLES 48000
#define NSL_FE_FRAME_LENGTH 400
#define NSL_FE_FRAME_STEP 160
#define NSL_FE_NUM_FRAMES 298
#define NSL_FE_FFT_LENGTH 512
#define NSL_FE_FFT_HALF 256
#define NSL_FE_NUM_BANDS 40
#define NSL_FE_FIRST_BIN 1
#define NSL_FE_LAST_BIN 244
#define NSL_FE_NUM_WEIGHTS 468
#define NSL_FE_PEAK_NORMALIZE 1
#define NSL_FE_PEAK_FLOOR 3.05175781e-05f
#define NSL_FE_LOG_FLOOR 9.99999997e-07f
#define NSL_FE_INPUT_SCALE 0.0908607468f
#define NSL_FE_INPUT_ZERO_POINT 24

extern const float nsl_fe_window[NSL_FE_FRAME_LENGTH];
extern const float nsl_fe_cos[NSL_FE_FFT_LENGTH / 2];
extern const float nsl_fe_sin[NSL_FE_FFT_LENGTH / 2];
extern const int16_t nsl_fe_bin_first_band[NSL_FE_LAST_BIN - NSL_FE_FIRST_BIN];
extern const int16_t nsl_fe_bin_bands[NSL_FE_LAST_BIN - NSL_FE_FIRST_BIN];
extern const int16_t nsl_fe_bin_offset[NSL_FE_LAST_BIN - NSL_FE_FIRST_BIN];
extern const float nsl_fe_weights[NSL_FE_NUM_WEIGHTS];

/* Per-band calibration x * scale + shift after the log (a speaker's
 * statistics mapped onto the model's reference); NULL resets it. */
void nsl_fe_set_calibration(const float* scale, const float* shift);
/* 1 / max(peak |audio|, NSL_FE_PEAK_FLOOR), or 1 without peak normalisation. */
float nsl_fe_gain(const float* audio, int num_samples);
void nsl_fe_compute(const float* audio, float* features);
void nsl_fe_quantize(const float* features, int count, int8_t* out);

typedef struct {
  float mel[NSL_FE_NUM_FRAMES * NSL_FE_NUM_BANDS];  /* Mel power, then features */
  float tail[NSL_FE_FRAME_LENGTH];  /* samples of the next frame so far */
  float peak;                       /* max |sample| of the window so far */
  int32_t held, samples, frames, ready;
} nsl_fe_stream_t;

size_t nsl_fe_stream_bytes(void);
void nsl_fe_stream_reset(nsl_fe_stream_t* s);
/* Consumes up to the window's NSL_FE_CLIP_SAMPLES (the rest is ignored);
 * returns the frames computed so far. */
int nsl_fe_stream_push(nsl_fe_stream_t* s, const float* samples, int count);
const float* nsl_fe_stream_features(nsl_fe_stream_t* s);

#ifdef __cplusplus
}
#endif
#endif  /* NSL_SER_FRONT_END_H_ */

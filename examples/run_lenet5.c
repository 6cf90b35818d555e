/*
 * run_lenet5.c: the smallest useful driver for code generated from
 * examples/lenet5.nn.  Creates the model from a seed (untrained weights),
 * draws a digit-like "7" into a 28x28 image, prints the 10 class
 * probabilities and the most likely class, then times the forward pass on a
 * full batch.  The weights are untrained, so the probabilities mean nothing
 * yet: this shows the API and the speed, not accuracy.
 *
 *   nncc examples/lenet5.nn -o lenet5.c
 *   cc -O3 -fopenmp -std=c11 run_lenet5.c lenet5.c -o run_lenet5 -lm
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lenet5.h"

#define SIDE 28
#define BATCH LENET5_MAX_BATCH

/* A "7": a horizontal bar on top and a diagonal stroke down to the left,
 * two pixels thick, on a black background. */
static void draw_seven(float *img) {
  for (int i = 0; i < SIDE * SIDE; i++)
    img[i] = 0.0f;
  for (int x = 6; x < 22; x++) {
    img[5 * SIDE + x] = 1.0f;
    img[6 * SIDE + x] = 1.0f;
  }
  for (int y = 7; y < 24; y++) {
    int x = 21 - (y - 7) * 10 / 17;
    img[y * SIDE + x] = 1.0f;
    img[y * SIDE + x - 1] = 0.8f;
  }
}

static double now_seconds(void) {
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int check(int status, const char *what) {
  if (status != 0)
    fprintf(stderr, "%s: %s\n", what, lenet5_strerror(status));
  return status;
}

int main(void) {
  lenet5 *m = lenet5_create(42);
  if (!m) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  static float x[BATCH * LENET5_X_SIZE], probs[BATCH * LENET5_PROBS_SIZE];

  /* One sample: class probabilities and the argmax. */
  draw_seven(x);
  if (check(lenet5_forward(m, 1, x, probs), "lenet5_forward"))
    return 1;
  int best = 0;
  for (int k = 0; k < LENET5_PROBS_SIZE; k++) {
    printf("class %d: %.4f\n", k, probs[k]);
    if (probs[k] > probs[best])
      best = k;
  }
  printf("argmax: %d (untrained weights, seed 42)\n", best);

  /* Timing: the same image in every slot of a full batch. */
  for (int b = 1; b < BATCH; b++)
    draw_seven(x + b * LENET5_X_SIZE);
  int reps = 0;
  double t0 = now_seconds(), t;
  do {
    if (check(lenet5_forward(m, BATCH, x, probs), "lenet5_forward"))
      return 1;
    reps++;
    t = now_seconds() - t0;
  } while (t < 1.0 && reps < 10000);
  printf("forward, batch %d: %.3f ms per batch, %.1f us per sample (%d runs)\n", BATCH,
         1e3 * t / reps, 1e6 * t / reps / BATCH, reps);
  lenet5_destroy(m);
  return 0;
}

/*
 * driver.c: the program scripts/mcu-check builds from one generated model,
 * once for x86 and once for a Cortex-M4F run under QEMU, so that the two
 * runs of the same C can be compared line by line.
 *
 * The model's memory is a static array of MEM_SIZE bytes, so it sits in .bss
 * and a model too big for the RAM region fails to link.  Baked weights
 * (--weights) start every build from the same tensors.  Output, one value
 * per line, %.9e (enough digits to round-trip an f32):
 *   out I V          inference build: the outputs for a fixed input
 *   loss S V         training build: the loss of step S, ten steps on one batch
 *   sum NAME S A G N training build: sum and sum of |.| of each tensor after
 *                    the ten steps, max |gradient| of the last step (-1 for
 *                    a buffer or a frozen parameter), element count
 *   lr V             the learning rate of the last step
 *   memory_size N, stack N, ticks_forward N, ticks_step N: facts, not compared
 *
 * Macros from the script: MODEL (the API prefix), MODEL_H ("ds_cnn.h"),
 * IN_SIZE, OUT_SIZE, MEM_SIZE; CLASSES (class target) or none (the target
 * is the input, as for the autoencoder); TRAIN=B for a training build that
 * trains on batches of B samples;
 * SAVE_INIT (x86, an unbaked training build) to write the initial weights
 * to argv[1] instead, with batchnorm statistics made non-trivial so that
 * folding them into the weights matters.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include MODEL_H

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define API(f) CAT(MODEL, f)

/* A fixed pseudo-random sequence in [-1, 1), integer arithmetic only, so
 * both targets see the same floats. */
static uint32_t lcg = 12345;
static float next_value(void) {
  lcg = lcg * 1664525u + 1013904223u;
  return (float)(int32_t)(lcg >> 8 & 0xffffff) / 8388608.0f - 1.0f;
}

static int fail(const char *what, int status) {
  printf("error: %s: %s\n", what, API(_strerror)(status));
  return 1;
}

#ifdef SAVE_INIT
/* Writes the weights of create(seed 1) to path, running statistics set to
 * values a trained model could have. */
static int save_init(const char *path) {
  MODEL *m = API(_create)(1);
  if (!m) {
    printf("error: create failed\n");
    return 1;
  }
  for (int i = 0; i < API(_tensor_count)(); i++) {
    const char *name = API(_tensor_name)(i);
    size_t n;
    float *t = API(_tensor)(m, i, &n);
    bool mean = strstr(name, "running_mean") != NULL, var = strstr(name, "running_var") != NULL;
    for (size_t k = 0; k < n && (mean || var); k++)
      t[k] = mean ? 0.1f * next_value() : 1.0f + 0.5f * next_value();
  }
  int st = API(_save)(m, path);
  API(_destroy)(m);
  return st ? fail("save", st) : 0;
}

int main(int argc, char **argv) {
  return argc == 2 ? save_init(argv[1]) : 2;
}
#else
static _Alignas(64) unsigned char memory[MEM_SIZE];
#ifndef TRAIN
#define TRAIN 1
#define INFER_ONLY
#endif
static float input[TRAIN * IN_SIZE], output[OUT_SIZE];

#ifdef __arm__
/* Stack painting: fill the unused stack below main's frame with a pattern,
 * find later how deep the pattern was overwritten.  The stack region is
 * [__stack - __stack_size, __stack) (picolibc.ld; the script defines
 * __stack_size). */
extern char __stack[], __stack_size[];
#define PAINT 0x5aa5c33cu

static __attribute__((noinline)) void paint_stack(void) {
  uint32_t *p = (uint32_t *)(void *)(__stack - (uintptr_t)__stack_size);
  uintptr_t end = (uintptr_t)__builtin_frame_address(0) - 64;
  while ((uintptr_t)p < end)
    *p++ = PAINT;
}

static unsigned long stack_used(void) {
  const uint32_t *p = (const uint32_t *)(void *)(__stack - (uintptr_t)__stack_size);
  while ((const char *)p < __stack && *p == PAINT)
    p++;
  return (unsigned long)(__stack - (const char *)p);
}

/* CMSDK APB timer 0 of the MPS2 board, a down counter at the 25 MHz system
 * clock.  Under qemu -icount shift=0 an instruction takes 1 ns of virtual
 * time, so a tick is 40 instructions. */
#define TIMER0 ((volatile uint32_t *)0x40000000u)
static void timer_start(void) {
  TIMER0[0] = 0;
  TIMER0[2] = 0xffffffffu; /* RELOAD */
  TIMER0[1] = 0xffffffffu; /* VALUE */
  TIMER0[0] = 1;           /* CTRL: enable */
}
static unsigned long timer_ticks(void) {
  return 0xfffffffful - TIMER0[1];
}
#else
static void paint_stack(void) {
}
static unsigned long stack_used(void) {
  return 0;
}
static void timer_start(void) {
}
static unsigned long timer_ticks(void) {
  return 0;
}
#endif

#ifndef INFER_ONLY
/* Ten steps on the batch; then a sum and a sum of |.| of each tensor. */
static int train(MODEL *m) {
#ifdef CLASSES
  int32_t target[TRAIN];
  for (int i = 0; i < TRAIN; i++)
    target[i] = (CLASSES - 1 + i) % CLASSES;
#else
  const float *target = input;
#endif
  for (int step = 0; step < 10; step++) {
    float loss;
    timer_start();
    int st = API(_train_step)(m, TRAIN, input, target, &loss);
    unsigned long ticks = timer_ticks();
    if (st)
      return fail("train_step", st);
    printf("loss %d %.9e\n", step, (double)loss);
    printf("ticks_step %lu\n", ticks);
  }
  for (int i = 0; i < API(_tensor_count)(); i++) {
    size_t n;
    const float *t = API(_tensor)(m, i, &n);
    double sum = 0, abs = 0;
    for (size_t k = 0; k < n; k++) {
      sum += t[k];
      abs += t[k] < 0 ? -t[k] : t[k];
    }
#ifdef NO_GRAD   /* --eager-update: no grad(); mcu-check takes the gradients from a build without */
    const float *g = NULL;
#else
    const float *g = API(_grad)(m, i, &n);
#endif
    double gmax = g ? 0 : -1;
    for (size_t k = 0; g && k < n; k++)
      gmax = g[k] > gmax ? g[k] : -g[k] > gmax ? -g[k] : gmax;
    printf("sum %s %.9e %.9e %.3e %lu\n", API(_tensor_name)(i), sum, abs, gmax,
           (unsigned long)n);
  }
  printf("lr %.9e\n", API(_lr)(m));
  return 0;
}
#endif

int main(void) {
  paint_stack();
  for (int i = 0; i < TRAIN * IN_SIZE; i++)
    input[i] = next_value();
  printf("memory_size %lu\n", (unsigned long)API(_memory_size)());
  if (API(_memory_size)() > sizeof memory) {
    printf("error: memory_size %lu > MEM_SIZE %lu\n", (unsigned long)API(_memory_size)(),
           (unsigned long)sizeof memory);
    return 1;
  }
  MODEL *m = API(_init_in)(memory, 1);
  timer_start();
  int st = API(_forward)(m, 1, input, output);
  unsigned long ticks = timer_ticks();
  if (st)
    return fail("forward", st);
  printf("ticks_forward %lu\n", ticks);
  for (int i = 0; i < OUT_SIZE; i++)
    printf("out %d %.9e\n", i, (double)output[i]);
#ifndef INFER_ONLY
  if (train(m))
    return 1;
#endif
  printf("stack %lu\n", stack_used());
  return 0;
}
#endif

/*
 * main.c: a product embedding a generated model.  Only the header nncc made
 * is used: memory from the caller (no malloc in the model), one forward
 * pass, the predicted class printed.
 */
#include <stdio.h>
#include <stdlib.h>

#include "mlp.h"

int main(void) {
  static unsigned char memory[1 << 22];
  if (mlp_memory_size() > sizeof memory) {
    fprintf(stderr, "model needs %zu bytes\n", mlp_memory_size());
    return 1;
  }
  mlp *m = mlp_init_in(memory, 42);
  float x[MLP_X_SIZE], probs[MLP_PROBS_SIZE];
  for (int i = 0; i < MLP_X_SIZE; i++)
    x[i] = (float)((i * 37) % 101) / 101.0f;
  int status = mlp_forward(m, 1, x, probs);
  if (status != 0) {
    fprintf(stderr, "forward: %s\n", mlp_strerror(status));
    return 1;
  }
  int best = 0;
  float sum = 0;
  for (int k = 0; k < MLP_PROBS_SIZE; k++) {
    sum += probs[k];
    if (probs[k] > probs[best])
      best = k;
  }
  printf("class %d (p = %.3f, sum of p = %.3f), model memory %zu bytes\n", best, probs[best], sum,
         mlp_memory_size());
  return 0;
}

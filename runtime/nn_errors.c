/*
 * nn_errors.c: status codes shared by all generated code.
 *
 * Every generated function that can fail returns one of these (0 or
 * negative); it never prints and never exits.  Functions that can say more
 * (file I/O) also write a one-line message into a caller-supplied buffer.
 * The numeric values are part of the generated API: never renumber them.
 */
enum nn_status {
  NN_OK = 0,
  NN_ERR_ARG = -1,       /* bad argument: NULL pointer, batch size out of range */
  NN_ERR_IO = -2,        /* cannot open, read, write or rename a file */
  NN_ERR_FORMAT = -3,    /* not a valid safetensors file */
  NN_ERR_MISMATCH = -4,  /* tensor names, shapes or dtypes do not match the model */
  NN_ERR_NONFINITE = -5, /* loss or gradient is NaN/Inf; weights left unchanged */
  NN_ERR_NOMEM = -6,     /* out of memory */
  NN_ERR_DATA = -7       /* bad data: a label out of range, a NaN weight or a
                            negative second moment in a file being loaded */
};

static NN_UNUSED const char *nn_strerror(int code) {
  switch (code) {
  case NN_OK: return "success";
  case NN_ERR_ARG: return "bad argument";
  case NN_ERR_IO: return "input/output error";
  case NN_ERR_FORMAT: return "not a valid safetensors file";
  case NN_ERR_MISMATCH: return "tensors do not match the model";
  case NN_ERR_NONFINITE: return "loss or gradient is not finite; weights left unchanged";
  case NN_ERR_NOMEM: return "out of memory";
  case NN_ERR_DATA: return "bad input data or out-of-range values in a file";
  default: return "unknown error";
  }
}

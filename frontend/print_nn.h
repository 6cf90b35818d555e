/*
 * print_nn.h: a parsed program back as .nn text (frontend/print_nn.c), for
 * --emit-nn.
 */
#ifndef PRINT_NN_H
#define PRINT_NN_H

#include "nncc.h"

/* Appends the text of prog to b: it parses to the same program, each
 * statement and call on the line it came from. */
void print_program(Buf *b, const Program *prog);

#endif

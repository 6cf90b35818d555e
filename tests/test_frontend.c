/*
 * test_frontend.c: the lexer, parser and lowering, through the core API.
 *
 * Good programs are parsed and lowered from strings, then the graph is
 * checked: ops, layer names, shapes, attributes, value kinds, init choices.
 * Bad programs must give exactly one expected diagnostic: the table `bad`
 * lists source text and the first line of the expected error
 * (`t.nn:line:col: error: message`); a few tests check the whole text with
 * the source line and caret.  Hostile inputs (a 1 MB line, binary bytes,
 * 100000 nested parentheses, NUL bytes) must fail cleanly, never crash.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include "nncc.h"

static Ctx ctx;

static void setup(void) {
  memset(&ctx, 0, sizeof ctx);
  ctx.arena = new_arena();
}

static void teardown(void) {
  buf_free(&ctx.diag);
  free_arena(ctx.arena);
}

TestSuite(frontend, .init = setup, .fini = teardown);

static const char *diag(void) { return ctx.diag.data ? ctx.diag.data : ""; }

static const Program *parse(const char *text) {
  return parse_program(&ctx, source_from_string(&ctx, "t.nn", text));
}

static Graph *lower(const char *text, Mode mode) {
  const Program *p = parse(text);
  cr_assert(p, "parse failed:\n%s", diag());
  Graph *g = lower_program(&ctx, p, mode, DT_F32, 64, 8, false, false);
  cr_assert(g, "lowering failed:\n%s", diag());
  return g;
}

/* The first line of the diagnostic for text: parse, lower for inference,
 * and for training when there is a loss. */
static const char *first_error(const char *text) {
  const Program *p = parse_program(&ctx, source_from_string(&ctx, "t.nn", text));
  if (p && lower_program(&ctx, p, MODE_INFER, DT_F32, 64, 8, false, false) && program_has_loss(p))
    lower_program(&ctx, p, MODE_TRAIN, DT_F32, 64, 8, false, false);
  const char *d = diag();
  const char *nl = strchr(d, '\n');
  return arena_strndup(ctx.arena, d, nl ? (size_t)(nl - d) : strlen(d));
}

static const Node *find_node(const Graph *g, const char *name) {
  for (int i = 0; i < g->nodes.len; i++)
    if (strcmp(g->nodes.items[i].name, name) == 0)
      return &g->nodes.items[i];
  cr_assert_fail("no node %s", name);
  return NULL;
}

static const Value *find_value(const Graph *g, const char *name) {
  for (int i = 0; i < g->values.len; i++)
    if (strcmp(g->values.items[i].name, name) == 0)
      return &g->values.items[i];
  cr_assert_fail("no value %s", name);
  return NULL;
}

static const char *out_shape(const Graph *g, const Node *n) {
  return shape_str(ctx.arena, &val(g, n->out[0])->shape);
}

/* ---- good programs ---------------------------------------------------------- */

/* The programs below use these ops: a missing one is a failure. */
static void require_ops(const char *a, const char *b, const char *c) {
  cr_assert(op_lookup(a) >= 0 && op_lookup(b) >= 0 && op_lookup(c) >= 0,
            "ops %s, %s, %s must be registered", a, b, c);
}

static const char mlp[] =
    "model mlp\n"
    "input  x: f32[1, 28, 28]\n"
    "target y: class[10]\n"
    "h = flatten(x) |> dense(128) |> relu\n"
    "output logits = dense(h, 10)\n"
    "loss cross_entropy(logits, y)\n";

Test(frontend, mlp_infer_and_train) {
  Graph *g = lower(mlp, MODE_INFER);
  cr_assert_eq(g->nodes.len, 4);
  cr_assert_str_eq(out_shape(g, find_node(g, "flatten1")), "[784]");
  cr_assert_str_eq(out_shape(g, find_node(g, "fc1")), "[128]");
  const Value *logits = find_value(g, "logits");
  cr_assert_eq(logits->kind, V_OUTPUT);
  cr_assert_eq(logits->producer, find_node(g, "fc2")->id);
  cr_assert_eq(find_value(g, "x")->kind, V_INPUT);
  cr_assert_eq(g->loss, -1);
  g = lower(mlp, MODE_TRAIN);
  const Value *y = find_value(g, "y");
  cr_assert_eq(y->kind, V_TARGET);
  cr_assert_eq(y->dtype, DT_I32);
  cr_assert_eq(y->classes, 10);
  cr_assert(y->batched);
  cr_assert_str_eq(shape_str(ctx.arena, &y->shape), "[1]");
  cr_assert_eq(find_value(g, "logits")->kind, V_ACT);
  const Node *loss = find_node(g, "loss1");
  cr_assert_eq(loss->op, OP_SOFTMAX_XENT);
  cr_assert_eq(loss->in[0], find_node(g, "fc2")->out[0]);
  cr_assert_eq(loss->in[1], y->id);
  cr_assert_eq(g->loss, loss->out[0]);
  cr_assert_eq(val(g, g->loss)->kind, V_LOSS);
  cr_assert_eq(find_value(g, "fc1.weight")->init.kind, INIT_HE_NORMAL);
  cr_assert_eq(find_value(g, "fc2.weight")->init.kind, INIT_XAVIER_NORMAL);
}

static const char lenet[] =
    "# LeNet-5 without batchnorm\n"
    "model lenet5\n"
    "\n"
    "input  x: f32[1, 28, 28]\n"
    "target y: class[10]\n"
    "\n"
    "h = conv2d(x, 6, kernel=5, pad=2) |> relu |> maxpool(2)\n"
    "h = conv2d(h, 16, kernel=5) |> relu |> maxpool(2)\n"
    "h = flatten(h) |> dense(120) |> relu |> dense(84) |> relu\n"
    "logits = dense(h, 10)\n"
    "\n"
    "output probs = softmax(logits)\n"
    "loss   cross_entropy(logits, y)\n"
    "\n"
    "train {\n"
    "  optimizer adam(lr=1e-3)\n"
    "  schedule  cosine(steps=5000)\n"
    "  decay     l2(5e-4)\n"
    "}\n";

Test(frontend, lenet_infer) {
  require_ops("conv2d", "maxpool", "softmax");
  Graph *g = lower(lenet, MODE_INFER);
  cr_assert_str_eq(g->model, "lenet5");
  const char *names[] = {"conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten1",
                         "fc1", "relu3", "fc2", "relu4", "fc3", "softmax1"};
  const char *shapes[] = {"[6, 28, 28]", "[6, 28, 28]", "[6, 14, 14]", "[16, 10, 10]",
                          "[16, 10, 10]", "[16, 5, 5]", "[400]", "[120]", "[120]", "[84]",
                          "[84]", "[10]", "[10]"};
  cr_assert_eq(g->nodes.len, 13);
  for (int i = 0; i < 13; i++) {
    cr_assert_str_eq(g->nodes.items[i].name, names[i]);
    cr_assert_str_eq(out_shape(g, &g->nodes.items[i]), shapes[i], "%s", names[i]);
  }
  const Value *x = find_value(g, "x");
  cr_assert_eq(x->kind, V_INPUT);
  cr_assert(x->batched);
  cr_assert_eq(x->index, 0);
  const Value *probs = find_value(g, "probs");
  cr_assert_eq(probs->kind, V_OUTPUT);
  cr_assert_eq(probs->producer, find_node(g, "softmax1")->id);
  cr_assert_eq(g->loss, -1);
  for (int i = 0; i < g->values.len; i++)
    cr_assert_neq(g->values.items[i].kind, V_TARGET);
}

Test(frontend, lenet_train) {
  require_ops("conv2d", "maxpool", "softmax");
  Graph *g = lower(lenet, MODE_TRAIN);
  const Value *y = find_value(g, "y");
  cr_assert_eq(y->kind, V_TARGET);
  cr_assert_eq(y->dtype, DT_I32);
  cr_assert_eq(y->classes, 10);
  cr_assert_str_eq(shape_str(ctx.arena, &y->shape), "[1]");
  cr_assert_eq(find_value(g, "probs")->kind, V_ACT);
  const Node *loss = find_node(g, "loss1");
  cr_assert_eq(loss->op, OP_SOFTMAX_XENT);
  cr_assert_eq(loss->in[0], find_node(g, "fc3")->out[0]);
  cr_assert_eq(loss->in[1], y->id);
  cr_assert_eq(g->loss, loss->out[0]);
  cr_assert_eq(val(g, g->loss)->kind, V_LOSS);
}

/* The example at the top of docs/language.md (DESIGN.md's LeNet-5). */
Test(frontend, language_doc_example) {
  require_ops("conv2d", "maxpool", "softmax");
  require_ops("batchnorm", "relu", "dense");
  Source *doc = read_source(&ctx, NNCC_SOURCE_DIR "/docs/language.md");
  cr_assert(doc, "%s", diag());
  const char *start = strstr(doc->text, "```\n") + 4;
  const char *end = strstr(start, "```\n");
  const char *text = arena_strndup(ctx.arena, start, (size_t)(end - start));
  Graph *g = lower(text, MODE_TRAIN);
  cr_assert_str_eq(g->model, "lenet5");
  cr_assert_str_eq(out_shape(g, find_node(g, "pool2")), "[16, 5, 5]");
  cr_assert_eq(find_node(g, "bn2")->in[0], find_node(g, "conv2")->out[0]);
  cr_assert_eq(find_value(g, "conv1.weight")->init.kind, INIT_HE_NORMAL);
  cr_assert_eq(find_value(g, "fc1.weight")->init.kind, INIT_HE_NORMAL);
  cr_assert_eq(find_value(g, "fc3.weight")->init.kind, INIT_XAVIER_NORMAL);
  cr_assert_eq(val(g, g->loss)->kind, V_LOSS);
}

Test(frontend, lenet_train_config) {
  const TrainConfig *tc = program_train_config(parse(lenet));
  cr_assert_str_eq(tc->optimizer, "adam");
  cr_assert_float_eq(tc->lr, 1e-3, 1e-12);
  cr_assert_float_eq(tc->beta1, 0.9, 1e-12);
  cr_assert_float_eq(tc->beta2, 0.999, 1e-12);
  cr_assert_float_eq(tc->eps, 1e-8, 1e-15);
  cr_assert_str_eq(tc->schedule, "cosine");
  cr_assert_float_eq(tc->sched_steps, 5000, 0);
  cr_assert_float_eq(tc->lr_min, 0, 0);
  cr_assert_float_eq(tc->l2, 5e-4, 1e-12);
  cr_assert_not(tc->decay_all);
  cr_assert_str_eq(program_name(parse(lenet)), "lenet5");
}

Test(frontend, train_defaults_and_options) {
  const TrainConfig *tc = program_train_config(parse("model m\n"));
  cr_assert_str_eq(tc->optimizer, "sgd");
  cr_assert_float_eq(tc->lr, 0.01, 1e-12);
  cr_assert_str_eq(tc->schedule, "constant");
  cr_assert_float_eq(tc->l2, 0, 0);
  tc = program_train_config(parse(
      "model m\ntrain { optimizer momentum(0.1); schedule step(every=100)\n"
      "decay elastic(l1=1e-5, l2=1e-4); decay maxnorm(3); decay_all = true }\n"));
  cr_assert_str_eq(tc->optimizer, "momentum");
  cr_assert_float_eq(tc->lr, 0.1, 1e-12);
  cr_assert_float_eq(tc->momentum, 0.9, 1e-12);
  cr_assert_str_eq(tc->schedule, "step");
  cr_assert_float_eq(tc->sched_steps, 100, 0);
  cr_assert_float_eq(tc->sched_gamma, 0.1, 1e-12);
  cr_assert_float_eq(tc->l1, 1e-5, 1e-15);
  cr_assert_float_eq(tc->l2, 1e-4, 1e-15);
  cr_assert_float_eq(tc->max_norm, 3, 0);
  cr_assert(tc->decay_all);
  tc = program_train_config(parse("model m\ntrain {\noptimizer rmsprop\nschedule inv(0.5)\n}"));
  cr_assert_float_eq(tc->rho, 0.99, 1e-12);
  cr_assert_float_eq(tc->eps, 1e-8, 1e-15);
  cr_assert_float_eq(tc->sched_gamma, 0.5, 0);
  cr_assert_float_eq(tc->sched_power, 1, 0);
  tc = program_train_config(parse("model m\ntrain { optimizer adagrad }"));
  cr_assert_float_eq(tc->eps, 1e-10, 1e-18);
}

Test(frontend, attrs_defaults_and_locations) {
  Graph *g = lower("model m\ninput x: f32[3, 8, 8]\n"
                   "h = dense(x, 4)\noutput y = dense(h, units=3, bias=false)\n",
                   MODE_INFER);
  const Node *a = find_node(g, "fc1"), *b = find_node(g, "fc2");
  cr_assert_eq(attr_int(a, 0), 4);
  cr_assert(attr_bool(a, 1));           /* bias default */
  cr_assert_eq(a->attr[1].loc.line, 3); /* defaults point at the call */
  cr_assert_eq(a->attr[1].loc.col, 5);
  cr_assert_eq(a->nin, 3);
  cr_assert_eq(attr_int(b, 0), 3);
  cr_assert_not(attr_bool(b, 1));
  cr_assert_eq(b->attr[0].loc.line, 4);
  cr_assert_eq(b->attr[0].loc.col, 27);
  cr_assert_eq(b->attr[1].loc.col, 35);
  cr_assert_eq(b->loc.col, 12);
  cr_assert_eq(b->loc.len, 5);
  cr_assert_eq(b->nin, 2);              /* h and the weight; no bias */
  cr_assert_str_eq(val(g, b->in[1])->name, "fc2.weight");
  cr_assert_str_eq(out_shape(g, a), "[4]");
}

Test(frontend, pipes_span_lines_and_numbers_compute) {
  Graph *g = lower("model m\ninput x: f32[16]\nc = 2 * (3 + 1)\n"
                   "h = x\n  |> dense(c)\n  |> relu |>\n  dense(units=c / 2,\n bias=false)\n"
                   "output y = h\n", MODE_INFER);
  cr_assert_eq(g->nodes.len, 3);
  cr_assert_eq(attr_int(find_node(g, "fc1"), 0), 8);
  cr_assert_eq(attr_int(find_node(g, "fc2"), 0), 4);
  cr_assert_eq(find_node(g, "fc2")->nin, 2);
  cr_assert_eq(find_value(g, "y")->kind, V_OUTPUT);
}

/* A variable may name an identifier (`tune = weight`), passed on like one
 * written in place: a fine-tuning recipe switched in one line. */
Test(frontend, variables_name_identifiers) {
  Graph *g = lower("model m\ninput x: f32[6]\ntarget t: f32[4]\ntune = weight\n"
                   "stats = running\n"
                   "block b(h, s, f) { return dense(h, 4, freeze=f) |> batchnorm(stats=s) }\n"
                   "out = b(x, stats, tune)\noutput out\nloss mse(out, t)\n",
                   MODE_TRAIN);
  cr_expect(find_value(g, "b1.fc1.weight")->frozen);
  cr_expect(!find_value(g, "b1.fc1.bias")->frozen);
  cr_expect_eq(find_node(g, "b1.bn1")->op, OP_BATCHNORM_INFER);
}

/* Tuples: a kernel per axis, pads per side, a tuple as a block default;
 * padding=same sizes the output as ceil(in / stride). */
Test(frontend, window_tuples) {
  Graph *g = lower("model m\ninput x: f32[2, 49, 10]\n"
                   "block b(h, k=(3, 1)) { return conv2d(h, 4, kernel=k, padding=same) }\n"
                   "h = conv2d(x, 4, kernel=(10, 4), stride=(2, 2), padding=same)\n"
                   "h = b(h)\n"
                   "output y = avgpool(h, (5, 5), stride=(1, 5), pad=(2, 0))\n",
                   MODE_INFER);
  const Node *c = find_node(g, "conv1"), *bc = find_node(g, "b1.conv1");
  const Node *p = find_node(g, "pool1");
  cr_assert(c && bc && p);
  cr_assert_eq(c->attr[1].nlist, 2);
  cr_assert_eq(c->attr[1].list[0], 10);
  cr_assert_eq(c->attr[1].list[1], 4);
  cr_assert_eq(c->attr[1].loc.col, 25);
  cr_assert_str_eq(out_shape(g, c), "[4, 25, 5]");
  cr_assert_str_eq(shape_str(g->ctx->arena, &val(g, c->in[1])->shape), "[4, 2, 10, 4]");
  cr_assert_str_eq(out_shape(g, bc), "[4, 25, 5]");
  cr_assert_str_eq(shape_str(g->ctx->arena, &val(g, bc->in[1])->shape), "[4, 4, 3, 1]");
  cr_assert_str_eq(out_shape(g, p), "[4, 25, 1]");
}

Test(frontend, plus_on_tensors_is_add) {
  Graph *g = lower("model m\ninput a: f32[4]\ninput b: f32[4]\noutput s = a + b; "
                   "output t = add(a, b, relu(a))\n", MODE_INFER);
  const Node *add1 = find_node(g, "add1");
  cr_assert_eq(add1->op, OP_ADD);
  cr_assert_eq(add1->nin, 2);
  cr_assert_eq(find_node(g, "add2")->nin, 3);
  cr_assert_eq(find_value(g, "a")->index, 0);
  cr_assert_eq(find_value(g, "b")->index, 1);
  cr_assert_eq(find_value(g, "s")->index, 0);
  cr_assert_eq(find_value(g, "t")->index, 1);
}

static const char blocks[] =
    "model m\n"
    "block unit(x, c, act=true) {\n"
    "  h = dense(x, c)\n"
    "  return relu(h)\n"
    "}\n"
    "block pair(x, c) {\n"
    "  return unit(x, c) |> unit(c, name=\"second\")\n"
    "}\n"
    "input x: f32[8]\n"
    "h = pair(x, 5)\n"
    "h = unit(h, 3, freeze=true)\n"
    "output y = dense(h, 2, name=\"head\")\n";

Test(frontend, blocks_name_and_locate_their_layers) {
  Graph *g = lower(blocks, MODE_INFER);
  const char *names[] = {"pair1.unit1.fc1", "pair1.unit1.relu1", "pair1.second.fc1",
                         "pair1.second.relu1", "unit1.fc1", "unit1.relu1", "head"};
  cr_assert_eq(g->nodes.len, 7);
  for (int i = 0; i < 7; i++)
    cr_assert_str_eq(g->nodes.items[i].name, names[i]);
  const Node *inner = find_node(g, "pair1.second.fc1");
  cr_assert_eq(inner->loc.line, 3);
  cr_assert(inner->loc.from);
  cr_assert_eq(inner->loc.from->line, 7);
  cr_assert_eq(inner->loc.from->col, 24);
  cr_assert(inner->loc.from->from);
  cr_assert_eq(inner->loc.from->from->line, 10);
  cr_assert_null(inner->loc.from->from->from);
  cr_assert_null(find_node(g, "head")->loc.from);
  cr_assert(find_value(g, "unit1.fc1.weight")->frozen);
  cr_assert(find_value(g, "unit1.fc1.bias")->frozen);
  cr_assert_not(find_value(g, "pair1.unit1.fc1.weight")->frozen);
  cr_assert_str_eq(out_shape(g, find_node(g, "head")), "[2]");
}

Test(frontend, repeat_rebinds_and_counts_names) {
  Graph *g = lower("model m\ninput x: f32[4]\nblock b(x, n) {\n repeat n { x = relu(x) }\n"
                   " return x\n}\nh = x\nrepeat 3 {\n  h = dense(h, 4)\n}\n"
                   "output y = b(h, 2)\n", MODE_INFER);
  const char *names[] = {"fc1", "fc2", "fc3", "b1.relu1", "b1.relu2"};
  cr_assert_eq(g->nodes.len, 5);
  for (int i = 0; i < 5; i++)
    cr_assert_str_eq(g->nodes.items[i].name, names[i]);
  cr_assert_eq(node_at(g, 1)->in[0], node_at(g, 0)->out[0]);
  cr_assert_eq(node_at(g, 4)->in[0], node_at(g, 3)->out[0]);
}

Test(frontend, init_defaults_and_explicit) {
  Graph *g = lower("model m\ninput x: f32[1, 8, 8]\n"
                   "h = dense(x, 4) |> relu\n"
                   "h = dense(h, 4, init=sparse, init_scale=5) |> relu\n"
                   "h = dense(h, 10, init=normal)\n"
                   "h = dense(h, 10, init=xavier_uniform) |> relu\n"
                   "output y = dense(h, 3)\n", MODE_INFER);
  cr_assert_eq(find_value(g, "fc1.weight")->init.kind, INIT_HE_NORMAL);
  cr_assert_eq(find_value(g, "fc2.weight")->init.kind, INIT_SPARSE);
  cr_assert_float_eq(find_value(g, "fc2.weight")->init.value, 5, 0);
  cr_assert_eq(find_value(g, "fc3.weight")->init.kind, INIT_NORMAL);
  cr_assert_float_eq(find_value(g, "fc3.weight")->init.value, 0.01, 1e-12);
  cr_assert_eq(find_value(g, "fc4.weight")->init.kind, INIT_XAVIER_UNIFORM);
  cr_assert_eq(find_value(g, "fc5.weight")->init.kind, INIT_XAVIER_NORMAL);
  cr_assert_eq(find_value(g, "fc1.bias")->init.kind, INIT_ZEROS);
}

Test(frontend, explicit_names_and_auto_names_never_clash) {
  Graph *g = lower("model m\ninput x: f32[4]\nh = relu(x, name=\"relu2\")\n"
                   "h = relu(h)\nh = relu(h)\noutput relu4 = relu(h)\n", MODE_INFER);
  const char *names[] = {"relu2", "relu1", "relu3", "relu4"};
  for (int i = 0; i < 4; i++)
    cr_assert_str_eq(g->nodes.items[i].name, names[i]);
}

Test(frontend, infer_ignores_targets_and_checks_loss_names) {
  Graph *g = lower("model m\ninput x: f32[4]\ntarget t: f32[2]\n"
                   "output y = dense(x, 2)\nloss cross_entropy(y, t)\n", MODE_INFER);
  cr_assert_eq(g->values.len, 5);       /* x, fc1.weight, fc1.bias, y, fc1.ws */
  cr_assert_eq(g->loss, -1);
}

/* ---- exact diagnostics ---------------------------------------------------------- */

Test(frontend, diag_shows_line_and_caret) {
  const Program *p = parse("model m\ninput x: f32[4]\n\th = conv3d(x)\noutput y = h\n");
  cr_assert_null(lower_program(&ctx, p, MODE_INFER, DT_F32, 64, 8, false, false));
  cr_assert_str_eq(diag(), "t.nn:3:13: error: unknown op or block 'conv3d'\n"
                           "        h = conv3d(x)\n"
                           "            ^~~~~~\n");
  cr_assert_eq(ctx.nerrors, 1);
}

Test(frontend, diag_notes_block_expansions) {
  const Program *p = parse("model m\nblock a(x) {\n  return dense(x, 0.5)\n}\n"
                           "block b(x) {\n  return a(x)\n}\ninput x: f32[4]\n"
                           "output y = b(x)\n");
  cr_assert_null(lower_program(&ctx, p, MODE_INFER, DT_F32, 64, 8, false, false));
  cr_assert_str_eq(diag(),
                   "t.nn:3:19: error: dense: argument 'units' must be an integer, not a number\n"
                   "  return dense(x, 0.5)\n"
                   "                  ^~~\n"
                   "t.nn:6:10: note: in block expanded here\n"
                   "  return a(x)\n"
                   "         ^\n"
                   "t.nn:9:12: note: in block expanded here\n"
                   "output y = b(x)\n"
                   "           ^\n");
}

Test(frontend, only_the_first_error_is_formatted) {
  Loc loc = {.src = source_from_string(&ctx, "t.nn", "abc\n"), .line = 1, .col = 2, .len = 1};
  error_at(&ctx, loc, "first");
  error_at(&ctx, loc, "second");
  error_plain(&ctx, "third");
  cr_assert_str_eq(diag(), "t.nn:1:2: error: first\nabc\n ^\n");
  cr_assert_eq(ctx.nerrors, 3);
}

typedef struct Bad {
  const char *src;
  const char *want;
} Bad;

#define M "model m\ninput x: f32[1, 8, 8]\n"

static Bad bad[] = {
    {"", "t.nn:1:1: error: expected 'model' before end of file"},
    {"# just a comment\n\n", "t.nn:3:1: error: expected 'model' before end of file"},
    {M "h = relu(x\noutput h = h\n", "t.nn:4:1: error: expected ',' before 'output'"},
    {M "h relu(x)\n", "t.nn:3:3: error: expected '=' after 'h' before 'relu'"},
    {M "h = \n", "t.nn:4:1: error: expected an expression before end of file"},
    {M "output y = relu(x) relu(x)\n",
     "t.nn:3:20: error: expected end of statement before 'relu'"},
    {M "output y = conv3d(x, 6)\n", "t.nn:3:12: error: unknown op or block 'conv3d'"},
    {M "output y = dense(x, 6, bias=true, dilation=2)\n",
     "t.nn:3:35: error: dense has no argument 'dilation'"},
    {M "output y = dense(x)\n", "t.nn:3:12: error: dense: missing argument 'units'"},
    {M "output y = batchnorm(x, stats=moving)\n",
     "t.nn:3:31: error: batchnorm: stats must be batch or running, got 'moving'"},
    {M "output y = dense(x, 6.5)\n",
     "t.nn:3:21: error: dense: argument 'units' must be an integer, not a number"},
    {M "output y = dense(x, units=k)\n",
     "t.nn:3:27: error: dense: argument 'units' must be an integer; 'k' is not defined"},
    {M "output y = dense(x, \"ten\")\n",
     "t.nn:3:21: error: dense: argument 'units' must be an integer, not a string"},
    {M "output y = dense(x, 10, bias=1)\n",
     "t.nn:3:30: error: dense: argument 'bias' must be true or false, not an integer"},
    {M "output y = dense(x, 10, units=3)\n",
     "t.nn:3:25: error: dense: argument 'units' is given twice"},
    {M "output y = dense(x, 10, true, 3)\n",
     "t.nn:3:31: error: too many arguments to dense (it takes 2 after its tensor input)"},
    {M "output y = dense(x, units=3, true)\n",
     "t.nn:3:30: error: positional argument after named arguments"},
    {M "output y = relu(x, x)\n", "t.nn:3:12: error: relu takes 1 tensor input, got 2"},
    {M "output y = relu(z)\n", "t.nn:3:17: error: undefined name 'z'"},
    {M "output y = h\n", "t.nn:3:12: error: undefined name 'h'"},
    {M "input x: f32[4]\n", "t.nn:3:7: error: 'x' is already defined"},
    {M "input X: f32[4]\n",
     "t.nn:3:7: error: input name 'X' clashes with 'x' (line 2) in the upper-case size macros"},
    {M "a = relu(x, name=\"r\")\noutput b = relu(a, name=\"r\")\n",
     "t.nn:4:25: error: layer name 'r' is already used"},
    {M "output y = relu(x, name=\"a b\")\n",
     "t.nn:3:25: error: layer name \"a b\" must be 1 to 64 characters from [A-Za-z0-9_.]"},
    {"model m\ninput x: f32[0, 4]\n", "t.nn:2:14: error: dimensions must be positive"},
    {"model m\ninput x: f32[4, -3]\n", "t.nn:2:17: error: dimensions must be positive"},
    {"model m\ninput x: f32[65536, 65536, 65536]\n",
     "t.nn:2:13: error: 'x' is too large (over 2147483648 elements per sample)"},
    {"model m\ninput x: f32[1, 2, 3, 4, 5]\n",
     "t.nn:2:26: error: 'x' has more than 4 dimensions"},
    {"model m\ninput x: f32[]\n", "t.nn:2:14: error: 'x' needs at least one dimension"},
    {"model m\ninput x: i8[4]\n", "t.nn:2:10: error: expected 'f32' before 'i8'"},
    {M "c = 99999999999\n",
     "t.nn:3:5: error: integer literal is too large (the limit is 2147483647)"},
    {M "c = 1e999\n", "t.nn:3:5: error: number '1e999' is out of range"},
    {M "c = 12abc\n", "t.nn:3:5: error: invalid number '12abc'"},
    {M "output y = relu(x, name=\"abc)\n", "t.nn:3:25: error: unterminated string"},
    {M "output y = relu(x, name=\"a\\\"\")\n",
     "t.nn:3:25: error: escape sequences are not allowed in strings"},
    {M "h = x @ x\n", "t.nn:3:7: error: unexpected character '@'"},
    {"model m\nblock a(x) {\n  return b(x)\n}\nblock b(x) {\n  return a(x)\n}\n"
     "input x: f32[4]\noutput y = a(x)\n",
     "t.nn:6:10: error: block 'a' calls itself (recursion is not allowed)"},
    {"model m\nblock f(x, c) {\n  return dense(x, c)\n}\ninput x: f32[4]\n"
     "output y = f(x, 1, 2)\n",
     "t.nn:6:20: error: block 'f' takes 2 arguments, got 3"},
    {"model m\nblock f(x, c) {\n  return dense(x, c)\n}\ninput x: f32[4]\n"
     "output y = f(x, d=1)\n",
     "t.nn:6:17: error: block 'f' has no parameter 'd'"},
    {"model m\nblock f(x, c) {\n  return dense(x, c)\n}\ninput x: f32[4]\n"
     "output y = f(x)\n",
     "t.nn:6:12: error: block 'f': missing argument 'c'"},
    {"model m\nblock f(x) {\n  h = relu(x)\n}\n", "t.nn:2:7: error: block 'f' has no 'return'"},
    {"model m\nblock f(x) {\n  return x\n  h = relu(x)\n}\n",
     "t.nn:4:3: error: statement after 'return'"},
    {"model m\nblock f(x, c=1, d) {\n  return x\n}\n",
     "t.nn:2:17: error: parameter 'd' without a default follows one with a default"},
    {"model m\nblock relu(x) {\n  return x\n}\n",
     "t.nn:2:7: error: block 'relu' has the name of an op"},
    {M "return x\n", "t.nn:3:1: error: 'return' outside a block"},
    {"model int\n", "t.nn:1:7: error: model name 'int' is reserved in the generated C code"},
    {"model class\n", "t.nn:1:7: error: model name 'class' is reserved in the generated C code"},
    {"model _Foo\n", "t.nn:1:7: error: model name '_Foo' must start with a letter"},
    {"model a__b\n",
     "t.nn:1:7: error: model name 'a__b' must not start with '_' or contain '__' (reserved in C)"},
    {"model nn_net\n",
     "t.nn:1:7: error: model name 'nn_net' must not start with 'nn_' (reserved for the runtime)"},
    {"model output\n",
     "t.nn:1:7: error: 'output' is a reserved word and cannot be used as the model name"},
    {"model a1234567890123456789012345678901234567890\n",
     "t.nn:1:7: error: model name is too long (the limit is 40 characters)"},
    {"model main\n", "t.nn:1:7: error: model name 'main' is reserved in the generated C code"},
    {"model net\ninput net: f32[4]\n",
     "t.nn:2:7: error: input name 'net' is the model name (the type of the generated API)"},
    {"model m\ninput int: f32[4]\n",
     "t.nn:2:7: error: input name 'int' is reserved in the generated C code"},
    {"model m\ninput m: f32[4]\n",
     "t.nn:2:7: error: input name 'm' is reserved in the generated C code"},
    {M "output x\n",
     "t.nn:3:8: error: output 'x' is an input; outputs must be computed by a layer"},
    {M "c = 3\noutput c\n", "t.nn:4:8: error: output 'c' must be a tensor, not an integer"},
    {"model m\ninput x: f32[4]\nh = relu(x)\n", "t.nn:1:7: error: model has no output"},
    {"model m\ninput x: f32[4]\ntarget t: class[4]\noutput y = relu(t)\n",
     "t.nn:4:17: error: target 't' can only be used in the 'loss' statement"},
    {"model m\ninput x: f32[4]\ntarget t: class[4]\noutput y = cross_entropy(x, t)\n",
     "t.nn:4:12: error: 'cross_entropy' is a loss function; use it in a 'loss' statement"},
    {"model m\ninput x: f32[4]\noutput y = relu(x)\nloss relu(y)\n",
     "t.nn:4:6: error: 'relu' is not a loss function"},
    {"model m\ninput x: f32[4]\noutput y = relu(x)\nloss cross_entropy(y, t)\n",
     "t.nn:4:23: error: undefined name 't'"},
    {"model m\ninput x: f32[4]\ntarget t: class[1]\n",
     "t.nn:3:17: error: the number of classes must be an integer of at least 2"},
    {M "h = x * 2\n",
     "t.nn:3:7: error: '*' needs two numbers or (for '+') two tensors; got a tensor and an "
     "integer"},
    {M "c = 4 / (2 - 2)\n", "t.nn:3:7: error: division by zero"},
    {M "c = 65536 * 65536\n", "t.nn:3:11: error: arithmetic overflow"},
    {M "repeat 0 {\n  x = relu(x)\n}\n",
     "t.nn:3:8: error: repeat count must be an integer from 1 to 10000"},
    {M "repeat 2 {\n  x = relu(x)\n", "t.nn:5:1: error: expected '}' before end of file"},
    {M "output y = dense(x, 10, init=foo)\n",
     "t.nn:3:30: error: unknown initializer 'foo' (zeros, ones, normal, xavier_normal, "
     "xavier_uniform, he_normal, he_uniform, sparse)"},
    {M "output y = relu(x, init=zeros)\n", "t.nn:3:25: error: init: 'relu' has no weights"},
    {M "output y = dense(x, 10, init_scale=2)\n",
     "t.nn:3:36: error: init_scale needs init=normal or init=sparse"},
    {M "output y = dense(x, 0)\n", "t.nn:3:21: error: dense: units must be positive, got 0"},
    {M "output y = reshape(x, [3, -1, -1])\n",
     "t.nn:3:23: error: reshape: dimension 2 is -1: each must be a positive integer, or -1 "
     "(once) for the one inferred"},
    {M "output y = reshape(x, shape=[-1, 7])\n",
     "t.nn:3:29: error: reshape: [1, 8, 8] holds 64 elements per sample, which the shape cannot "
     "hold"},
    {M "output y = reshape(x, [4, 4])\n",
     "t.nn:3:23: error: reshape: [1, 8, 8] holds 64 elements per sample, which the shape cannot "
     "hold"},
    {M "output y = reshape(x, [2, 0.5, 64])\n",
     "t.nn:3:23: error: reshape: dimension 1 is 0.5: each must be a positive integer, or -1 "
     "(once) for the one inferred"},
    {M "output y = reshape(x, [1, 2, 4, 8, 1])\n",
     "t.nn:3:23: error: reshape: the shape needs 1 to 4 dimensions, got 5"},
    {M "train {\n  optimizer adamw(lr=1)\n}\n", "t.nn:4:13: error: unknown optimizer 'adamw'"},
    {M "train {\n  optimizer adam(rate=1)\n}\n",
     "t.nn:4:18: error: optimizer adam has no option 'rate'"},
    {M "train {\n  optimizer sgd(lr=-1)\n}\n",
     "t.nn:4:20: error: sgd: 'lr' must be a positive number"},
    {M "train {\n  schedule cosine\n}\n", "t.nn:4:12: error: schedule cosine needs 'steps'"},
    {M "train {\n  optimizer sgd(lr=0.1, nesterov=true)\n}\n",
     "t.nn:4:25: error: sgd: nesterov=true needs momentum > 0 and dampening=0 (as torch.optim.SGD)"},
    {M "train {\n  optimizer sgd(0.1, 0.9, 0.5, 0, true)\n}\n",
     "t.nn:4:13: error: sgd: nesterov=true needs momentum > 0 and dampening=0 (as torch.optim.SGD)"},
    {M "train {\n  optimizer sgd(nesterov=1)\n}\n",
     "t.nn:4:26: error: sgd: 'nesterov' must be true or false"},
    {M "train {\n  optimizer sgd(dampening=1.5)\n}\n",
     "t.nn:4:27: error: sgd: 'dampening' must be a number in [0, 1]"},
    {M "train {\n  optimizer adam(betas=(0.9, 0.999, 0.5))\n}\n",
     "t.nn:4:24: error: adam: 'betas' must be two numbers, as (0.9, 0.999)"},
    {M "train {\n  optimizer adam(betas=(0.9, 1))\n}\n",
     "t.nn:4:30: error: adam: 'betas' must be a number in [0, 1)"},
    {M "train {\n  optimizer adam(beta2=0.9, betas=(0.9, 0.99))\n}\n",
     "t.nn:4:29: error: 'beta2' and 'betas' set the same option"},
    {M "train {\n  decay l2(0.1)\n  optimizer adam(weight_decay=0.1)\n}\n",
     "t.nn:5:18: error: weight_decay is torch.optim's L2 on every tensor: use it or 'decay' lines "
     "with decay_all, not both"},
    {M "train {\n  optimizer sgd\n  optimizer adam\n}\n",
     "t.nn:5:3: error: the train section already has a optimizer"},
    {M "train {\n  learning_rate = 3\n}\n",
     "t.nn:4:3: error: expected 'optimizer', 'schedule', 'decay' or 'decay_all' before "
     "'learning_rate'"},
    {"model m\nmodel n\n", "t.nn:2:1: error: 'model' may appear only once, at the start"},
    {M "output y = conv2d(x, 2, kernel=(3,))\n",
     "t.nn:3:35: error: expected an expression before ')'"},
    {M "output y = conv2d(x, 2, kernel=(3 3))\n", "t.nn:3:35: error: expected ')' before '3'"},
    {M "output y = conv2d(x, 2, kernel=(3, x))\n",
     "t.nn:3:36: error: tuple items must be numbers, not a tensor"},
    {M "output y = conv2d(x, 2, kernel=[])\n",
     "t.nn:3:32: error: conv2d: argument 'kernel' must be an integer or a tuple of integers, "
     "not a tuple with no values"},
    {M "output y = maxpool(x, kernel=(2, 2), stride=[1, 1, 1])\n",
     "t.nn:3:45: error: maxpool: stride must be an integer or (sh, sw), got 3 values"},
    {M "output y = avgpool(x, 2, padding=\"same\")\n",
     "t.nn:3:34: error: avgpool: argument 'padding' must be an identifier, not a string"},
    {"model m\ninput x: f32[4]\noutput y = relu(x)\nloss cross_entropy(y, y)\n"
     "loss cross_entropy(y, y)\n",
     "t.nn:5:1: error: the model already has a loss"},
};

/* Parameters cross into a re-executed process: pass indices, not pointers. */
ParameterizedTestParameters(frontend, bad_input) {
  static int index[sizeof bad / sizeof *bad];
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    index[i] = (int)i;
  return cr_make_param_array(int, index, sizeof bad / sizeof *bad);
}

ParameterizedTest(int *i, frontend, bad_input) {
  const Bad *b = &bad[*i];
  cr_assert_str_eq(first_error(b->src), b->want, "case %d, source:\n%s", *i, b->src);
}

Test(frontend, train_without_loss_is_an_error) {
  const Program *p = parse("model m\ninput x: f32[4]\noutput y = relu(x)\n");
  cr_assert_not(program_has_loss(p));
  cr_assert(lower_program(&ctx, p, MODE_INFER, DT_F32, 64, 8, false, false));
  cr_assert_null(lower_program(&ctx, p, MODE_TRAIN, DT_F32, 64, 8, false, false));
  cr_assert_str_eq(diag(), "t.nn:1:7: error: model has no loss; add e.g. "
                           "'loss cross_entropy(logits, y)'\nmodel m\n      ^\n");
}

/* ---- hostile input ------------------------------------------------------------- */

Test(frontend, one_megabyte_line_is_windowed) {
  size_t n = 1 << 20;
  char *text = calloc(n + 64, 1);
  strcpy(text, "model m\n");
  memset(text + 8, ' ', n);
  strcpy(text + 8 + n, "@\n");
  cr_assert_null(parse(text));
  free(text);
  const char *d = diag();
  const char *want = "t.nn:2:1048577: error: unexpected character '@'\n";
  cr_assert(strncmp(d, want, strlen(want)) == 0, "%s", d);
  const char *line = strchr(d, '\n') + 1;
  const char *caret = strchr(line, '\n') + 1;
  cr_assert(strncmp(line, "...", 3) == 0);
  cr_assert_lt(strchr(line, '\n') - line, 220);
  cr_assert_eq(strchr(caret, '^') - caret, strchr(line, '@') - line);
}

Test(frontend, long_identifier_is_rejected) {
  char text[2000] = "model m\nh = ";
  memset(text + strlen(text), 'a', 1000);
  cr_assert_null(parse(text));
  cr_assert(strstr(diag(), "t.nn:2:5: error: identifier is too long (the limit is 64 "
                           "characters)\n"), "%s", diag());
}

Test(frontend, binary_garbage_is_masked) {
  const char text[] = "\x7f" "ELF\x02\x01\x01\x03\xff\xfe\n";
  cr_assert_null(parse(text));
  cr_assert_str_eq(diag(), "t.nn:1:1: error: stray byte 0x7f in program (only ASCII is "
                           "allowed outside comments)\n?ELF??????\n^\n");
}

Test(frontend, binary_in_comment_is_fine_but_not_in_strings) {
  cr_assert(parse("# caf\xc3\xa9 \x01\x02\nmodel m\n"));
  cr_assert_str_eq(first_error("model m\nh = relu(x, name=\"caf\xc3\xa9\")\n"),
                   "t.nn:2:18: error: strings may only contain printable ASCII characters");
}

static const char *nested(char open, int depth) {
  char *text = arena_alloc(ctx.arena, (size_t)depth + 64);
  strcpy(text, "model m\ninput x: f32[4]\noutput y = ");
  size_t len = strlen(text);
  memset(text + len, open, (size_t)depth);
  strcpy(text + len + (size_t)depth, "x\n");
  return text;
}

Test(frontend, deep_nesting_is_capped) {
  const char *want = "t.nn:3:";
  cr_assert_null(parse(nested('(', 100000)));
  cr_assert(strncmp(diag(), want, strlen(want)) == 0);
  cr_assert(strstr(diag(), "error: nesting is too deep (the limit is 200 levels)\n"), "%s",
            diag());
}

Test(frontend, deep_brackets_and_minus_are_capped) {
  cr_assert_null(parse(nested('[', 100000)));
  cr_assert(strstr(diag(), "error: nesting is too deep (the limit is 200 levels)\n"));
  cr_assert_null(parse(nested('-', 100000)));
  cr_assert_eq(ctx.nerrors, 2);
}

Test(frontend, moderate_nesting_is_fine) {
  char text[1024] = "model m\ninput x: f32[4]\noutput y = relu(";
  size_t len = strlen(text);
  memset(text + len, '(', 150);
  memcpy(text + len + 150, "x", 1);
  memset(text + len + 151, ')', 151);
  Graph *g = lower(text, MODE_INFER);
  cr_assert_eq(g->nodes.len, 1);
}

Test(frontend, read_source_errors) {
  cr_assert_null(read_source(&ctx, "/nonexistent/x.nn"));
  cr_assert_str_eq(diag(), "nncc: error: cannot open '/nonexistent/x.nn': No such file or "
                           "directory\n");
}

Test(frontend, read_source_rejects_nul_bytes) {
  char path[] = "/tmp/nncc_frontend_XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  FILE *f = fdopen(fd, "wb");
  fwrite("model m\nh = \0x\n", 1, 15, f);
  fclose(f);
  cr_assert_null(read_source(&ctx, path));
  remove(path);
  const char *want = ":2:5: error: source file contains a NUL byte (is it a binary file?)\n"
                     "h = ?x\n    ^\n";
  cr_assert(strstr(diag(), want), "%s", diag());
}

Test(frontend, read_source_reads_empty_and_normal_files) {
  char path[] = "/tmp/nncc_frontend_XXXXXX";
  int fd = mkstemp(path);
  FILE *f = fdopen(fd, "wb");
  fclose(f);
  const Source *src = read_source(&ctx, path);
  cr_assert(src);
  cr_assert_eq(src->len, 0);
  cr_assert_null(parse_program(&ctx, src));
  remove(path);
  cr_assert(strstr(diag(), ":1:1: error: expected 'model' before end of file\n"));
}

Test(frontend, repeat_explosion_is_capped) {
  const Program *p = parse("model m\ninput x: f32[4]\nrepeat 10000 {\n repeat 10000 {\n"
                           "  x = relu(x)\n }\n}\noutput y = x\n");
  cr_assert_null(lower_program(&ctx, p, MODE_INFER, DT_F32, 64, 8, false, false));
  cr_assert(strstr(diag(), "t.nn:5:7: error: the model is too large (over 20000 layers "
                           "after expanding blocks and repeats)\n"), "%s", diag());
}

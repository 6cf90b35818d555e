/* tests/torch/harness.c: runs one nncc-generated model for tests/torch/check.py.
 *
 * check.py emits a model under the name `nnref` and compiles it with this file.  The facts the
 * harness cannot know come in as macros: IN_SIZE and OUT_SIZE (reals per sample of the one input
 * and the one output), TGT_CLASSES=K (class labels) or TGT_SIZE=S (reals per sample of a real
 * target), and REF_F64 for --dtype f64 builds.
 *
 *   harness DIR STEPS SEED BATCH [name=value ...]
 *
 * reads DIR/x.bin (BATCH * IN_SIZE reals) and DIR/y.bin (BATCH int32 labels or BATCH * TGT_SIZE
 * reals), creates the model from SEED, sets the hyper-parameters given as name=value, saves
 * DIR/ckpt0.safetensors, and then for k = 0 .. STEPS-1:
 *   forward (inference graph)             -> DIR/step<k>.bin: "out"
 *   gradients (forward + loss + backward)  -> DIR/step<k>.bin: "loss", "grad.<tensor name>"
 *   update (one optimizer step)            -> DIR/ckpt<k+1>.safetensors (model save: weights,
 *                                             buffers, optimizer state, step)
 * and finally forward again -> DIR/step<STEPS>.bin: "out".
 *
 * `harness DIR load SEED BATCH FILE` instead loads FILE (a checkpoint PyTorch wrote) and saves the
 * model back as DIR/loaded.safetensors.
 *
 * A .bin file is a list of records: u32 name length, the name, u64 count, count reals (native
 * endianness; check.py reads it with numpy).  Any failing call prints the model's error and exits 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnref.h"

#if !defined(IN_SIZE) || !defined(OUT_SIZE) || (!defined(TGT_CLASSES) && !defined(TGT_SIZE))
#error "check.py passes -DIN_SIZE=... -DOUT_SIZE=... and -DTGT_CLASSES=K or -DTGT_SIZE=S"
#endif

#ifdef REF_F64
typedef double real;
#else
typedef float real;
#endif
#ifdef TGT_CLASSES
typedef int32_t target;
#define TGT_PER_SAMPLE 1
#else
typedef real target;
#define TGT_PER_SAMPLE TGT_SIZE
#endif

static nnref *model;

static void fail(const char *what, int status)
{
    fprintf(stderr, "harness: %s: %s (%s)\n", what, nnref_strerror(status), nnref_last_error(model));
    exit(1);
}

static void *read_file(const char *dir, const char *name, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    void *data = malloc(bytes);
    if (!f || !data || fread(data, 1, bytes, f) != bytes) {
        fprintf(stderr, "harness: cannot read %zu bytes from %s\n", bytes, path);
        exit(1);
    }
    fclose(f);
    return data;
}

static void record(FILE *f, const char *name, const real *data, uint64_t count)
{
    uint32_t len = (uint32_t)strlen(name);
    if (fwrite(&len, sizeof len, 1, f) != 1 || fwrite(name, 1, len, f) != len ||
        fwrite(&count, sizeof count, 1, f) != 1 || fwrite(data, sizeof *data, count, f) != count) {
        fprintf(stderr, "harness: write error\n");
        exit(1);
    }
}

static FILE *open_step(const char *dir, int k)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/step%d.bin", dir, k);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "harness: cannot write %s\n", path);
        exit(1);
    }
    return f;
}

static void forward(FILE *f, int n, const real *x, real *out)
{
    int st = nnref_forward(model, n, x, out);
    if (st)
        fail("forward", st);
    record(f, "out", out, (uint64_t)n * OUT_SIZE);
}

static void gradients(FILE *f, int n, const real *x, const target *y)
{
    real loss = 0;
    int st = nnref_gradients(model, n, x, y, &loss);
    if (st)
        fail("gradients", st);
    record(f, "loss", &loss, 1);
    for (int i = 0; i < nnref_tensor_count(); i++) {
        size_t numel = 0;
        const real *g = nnref_grad(model, i, &numel);
        char name[512];
        if (!g)
            continue;   /* a buffer or a frozen tensor */
        snprintf(name, sizeof name, "grad.%s", nnref_tensor_name(i));
        record(f, name, g, numel);
    }
}

static void save_as(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int st = nnref_save(model, path);
    if (st)
        fail("save", st);
}

static void save(const char *dir, int k)
{
    char name[64];
    snprintf(name, sizeof name, "ckpt%d.safetensors", k);
    save_as(dir, name);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: harness DIR STEPS SEED BATCH [name=value ...]\n"
                        "       harness DIR load SEED BATCH FILE\n");
        return 2;
    }
    const char *dir = argv[1];
    if (strcmp(argv[2], "load") == 0 && argc == 6) {
        /* A checkpoint written by PyTorch: load it, save it back as DIR/loaded.safetensors. */
        model = nnref_create(strtoull(argv[3], NULL, 10));
        if (!model)
            return 1;
        int st = nnref_load(model, argv[5]);
        if (st)
            fail("load", st);
        save_as(dir, "loaded.safetensors");
        nnref_destroy(model);
        return 0;
    }
    int steps = atoi(argv[2]), n = atoi(argv[4]);
    if (n < 1 || n > NNREF_MAX_BATCH || steps < 0) {
        fprintf(stderr, "harness: bad STEPS or BATCH\n");
        return 2;
    }
    model = nnref_create(strtoull(argv[3], NULL, 10));
    if (!model) {
        fprintf(stderr, "harness: out of memory\n");
        return 1;
    }
    for (int i = 5; i < argc; i++) {
        char name[64];
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq - argv[i] >= (long)sizeof name) {
            fprintf(stderr, "harness: expected name=value, got %s\n", argv[i]);
            return 2;
        }
        memcpy(name, argv[i], (size_t)(eq - argv[i]));
        name[eq - argv[i]] = 0;
        int st = nnref_set(model, name, strtod(eq + 1, NULL));
        if (st)
            fail(argv[i], st);
    }
    real *x = read_file(dir, "x.bin", sizeof(real) * (size_t)n * IN_SIZE);
    target *y = read_file(dir, "y.bin", sizeof(target) * (size_t)n * TGT_PER_SAMPLE);
    real *out = malloc(sizeof(real) * (size_t)n * OUT_SIZE);
    if (!out)
        return 1;
    save(dir, 0);
    for (int k = 0; k <= steps; k++) {
        FILE *f = open_step(dir, k);
        forward(f, n, x, out);
        if (k < steps)
            gradients(f, n, x, y);
        fclose(f);
        if (k < steps) {
            int st = nnref_update(model);
            if (st)
                fail("update", st);
            save(dir, k + 1);
        }
    }
    nnref_destroy(model);
    free(x);
    free(y);
    free(out);
    return 0;
}

/*
 * names.c: turning untrusted model text into safe C.
 *
 * Every identifier in emitted C is built here: characters outside
 * [A-Za-z0-9_] become '_', C keywords, reserved names (leading '_', "__")
 * and the "nn_" runtime prefix are avoided, and a table makes each
 * identifier unique ("a.b" and "a_b" would collide).  Original names reach
 * the output only as string literals escaped by c_string().
 */
#include <ctype.h>
#include <string.h>

#include "codegen.h"

static const char *const c_keywords[] = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double",
    "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long",
    "register", "restrict", "return", "short", "signed", "sizeof", "static", "struct",
    "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "_Alignas",
    "_Alignof", "_Atomic", "_Bool", "_Complex", "_Generic", "_Imaginary", "_Noreturn",
    "_Static_assert", "_Thread_local", "bool", "true", "false", "asm", "typeof",
    "main", "real", "NULL", "errno", "assert", "offsetof", NULL};

bool is_c_keyword(const char *s) {
  for (int i = 0; c_keywords[i]; i++)
    if (strcmp(s, c_keywords[i]) == 0)
      return true;
  return false;
}

/* The table is hashed (open addressing, a power-of-two size at most half
 * full): a model of 20,000 layers names some 100,000 tensors. */
static unsigned hash(const char *s) {
  unsigned h = 2166136261u;   /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

int ident_find(const Idents *t, const char *s) {
  if (!t->cap)
    return -1;
  for (unsigned i = hash(s) & (unsigned)(t->cap - 1);; i = (i + 1) & (unsigned)(t->cap - 1)) {
    int k = t->slots[i] - 1;
    if (k < 0 || strcmp(t->names.items[k], s) == 0)
      return k;
  }
}

static void add(Arena *a, Idents *t, const char *s) {
  vec_push(a, t->names, s);
  if (2 * t->names.len > t->cap) {
    t->cap = t->cap ? 2 * t->cap : 64;
    t->slots = arena_alloc(a, sizeof(int) * (size_t)t->cap);
    for (int k = 0; k < t->names.len - 1; k++) {
      unsigned i = hash(t->names.items[k]) & (unsigned)(t->cap - 1);
      while (t->slots[i])
        i = (i + 1) & (unsigned)(t->cap - 1);
      t->slots[i] = k + 1;
    }
  }
  unsigned i = hash(s) & (unsigned)(t->cap - 1);
  while (t->slots[i])
    i = (i + 1) & (unsigned)(t->cap - 1);
  t->slots[i] = t->names.len;
}

static bool is_taken(const Idents *t, const char *s) { return ident_find(t, s) >= 0; }

void ident_reserve(Arena *a, Idents *t, const char *s) {
  if (!is_taken(t, s))
    add(a, t, arena_strdup(a, s));
}

const char *ident_new(Arena *a, Idents *t, const char *name, const char *suffix) {
  size_t n = strlen(name);
  if (n > 48)
    n = 48;
  char *s = arena_alloc(a, n + strlen(suffix) + 24);
  size_t len = 0;
  if (n == 0 || isdigit((unsigned char)name[0]) || name[0] == '_')
    s[len++] = 'l';
  for (size_t i = 0; i < n; i++) {
    char ch = name[i];
    bool ok = isalnum((unsigned char)ch) || ch == '_';
    /* no "__" anywhere: reserved for the implementation */
    if (!ok || (ch == '_' && len > 0 && s[len - 1] == '_'))
      ch = (len > 0 && s[len - 1] == '_') ? 0 : '_';
    if (ch)
      s[len++] = ch;
  }
  if (strncmp(s, "nn_", 3) == 0 || strncmp(s, "NN_", 3) == 0)
    s[2] = 'x';
  strcpy(s + len, suffix);
  if (is_c_keyword(s))
    strcat(s, "_");
  size_t base = strlen(s);
  for (int k = 2; is_taken(t, s); k++)
    snprintf(s + base, 24, "%s%d", s[base - 1] == '_' ? "" : "_", k);
  add(a, t, s);
  return s;
}

const char *c_string(Arena *a, const char *s) {
  size_t n = strlen(s);
  char *out = arena_alloc(a, 4 * n + 3);
  size_t len = 0;
  out[len++] = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 32 || ch > 126 || ch == '"' || ch == '\\' || ch == '?')
      len += (size_t)sprintf(out + len, "\\%03o", ch);
    else
      out[len++] = (char)ch;
  }
  out[len++] = '"';
  out[len] = '\0';
  return out;
}

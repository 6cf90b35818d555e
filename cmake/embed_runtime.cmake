# Writes OUT: for each runtime source file foo.c a byte array
#   const char nncc_runtime_foo[] = {..., 0};
# and a table nncc_runtime_files[] of {name, text} in SOURCES order.
set(body "/* generated from the runtime/ sources by cmake/embed_runtime.cmake; do not edit */\n")
string(APPEND body "#include <stddef.h>\n")
set(table "")
string(REPLACE "|" ";" SOURCES "${SOURCES}")
foreach(src IN LISTS SOURCES)
  get_filename_component(name ${src} NAME_WE)
  file(READ ${src} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){24})" "\\1\n" bytes "${bytes}")
  string(APPEND body "static const char nncc_runtime_${name}[] = {\n${bytes}0};\n")
  string(APPEND table "  {\"${name}\", nncc_runtime_${name}},\n")
endforeach()
string(APPEND body "const struct { const char *name, *text; } nncc_runtime_files[] = {\n${table}  {NULL, NULL}};\n")
file(WRITE ${OUT} "${body}")

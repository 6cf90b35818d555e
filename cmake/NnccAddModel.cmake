# nncc_add_model(<target> <model.nn> [NAME <name>] [OPTIONS <nncc options>...])
#
# Compiles <model.nn> with nncc at build time into <name>.c and <name>.h
# (in ${CMAKE_CURRENT_BINARY_DIR}/nncc/) and adds them to <target>, like
# protobuf_generate.  <name> defaults to the model file's base name and must
# match the `model` line, which names the generated API (<name>_forward, ...).
# The generated code needs libm, and OpenMP when it is found.
function(nncc_add_model target model)
  cmake_parse_arguments(ARG "" "NAME" "OPTIONS" ${ARGN})
  get_filename_component(model_abs ${model} ABSOLUTE)
  if(NOT ARG_NAME)
    get_filename_component(ARG_NAME ${model} NAME_WE)
  endif()
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/nncc)
  set(out_c ${out_dir}/${ARG_NAME}.c)
  set(out_h ${out_dir}/${ARG_NAME}.h)
  add_custom_command(
    OUTPUT ${out_c} ${out_h}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND nncc::nncc ${model_abs} -o ${out_c} ${ARG_OPTIONS}
    DEPENDS ${model_abs} nncc::nncc
    COMMENT "nncc: compiling ${model} to ${ARG_NAME}.c"
    VERBATIM)
  target_sources(${target} PRIVATE ${out_c} ${out_h})
  target_include_directories(${target} PRIVATE ${out_dir})
  find_package(OpenMP COMPONENTS C QUIET)
  if(OpenMP_C_FOUND)
    target_link_libraries(${target} PRIVATE OpenMP::OpenMP_C)
  endif()
  target_link_libraries(${target} PRIVATE m)
endfunction()

# Embeds a text file into the binary at build time, so a file of the source
# tree and the program that prints it cannot drift apart.
#
#   warmpool_embed_text(TARGET target INPUT file SYMBOL ns::name)
#
# adds to `target` a generated source defining
#   namespace ns { extern const std::string_view name; }
# holding the bytes of `file`; the source is regenerated whenever the file
# changes. Declare the same `extern` where it is used.
#
# Run as a script (cmake -DINPUT=.. -DOUTPUT=.. -DSYMBOL=.. -P EmbedText.cmake)
# it writes that source.

if(CMAKE_SCRIPT_MODE_FILE)
  file(READ "${INPUT}" hex HEX)
  string(LENGTH "${hex}" hex_length)
  math(EXPR size "${hex_length} / 2")
  # Two hex digits per byte -> "0x.., " with a line break every 16 bytes.
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1, " bytes "${hex}")
  string(REGEX REPLACE "((0x[0-9a-f][0-9a-f], ){16})" "\\1\n  " bytes "${bytes}")
  string(REGEX MATCH "^(.*)::([A-Za-z_0-9]+)$" _ "${SYMBOL}")
  set(namespace "${CMAKE_MATCH_1}")
  set(name "${CMAKE_MATCH_2}")
  file(WRITE "${OUTPUT}.tmp"
    "// Generated from ${INPUT} by cmake/EmbedText.cmake; do not edit.\n"
    "#include <string_view>\n"
    "namespace ${namespace} {\n"
    "namespace {\n"
    "const char kBytes[] = {\n  ${bytes}0x00};\n"
    "}  // namespace\n"
    "extern const std::string_view ${name};\n"
    "const std::string_view ${name}(kBytes, ${size});\n"
    "}  // namespace ${namespace}\n")
  # Only touch the output when it changed: no needless recompiles.
  file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
  file(REMOVE "${OUTPUT}.tmp")
  return()
endif()

set(WARMPOOL_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_FILE})

function(warmpool_embed_text)
  cmake_parse_arguments(ARG "" "TARGET;INPUT;SYMBOL" "" ${ARGN})
  get_filename_component(base ${ARG_INPUT} NAME)
  string(MAKE_C_IDENTIFIER "${base}" base)
  set(output ${CMAKE_CURRENT_BINARY_DIR}/embedded_${base}.cc)
  add_custom_command(
    OUTPUT ${output}
    COMMAND ${CMAKE_COMMAND} -DINPUT=${ARG_INPUT} -DOUTPUT=${output} -DSYMBOL=${ARG_SYMBOL}
            -P ${WARMPOOL_EMBED_SCRIPT}
    DEPENDS ${ARG_INPUT} ${WARMPOOL_EMBED_SCRIPT}
    COMMENT "embed ${ARG_INPUT}")
  target_sources(${ARG_TARGET} PRIVATE ${output})
endfunction()

# Fails when JSON is parsed anywhere in src/ but through ds::ParseJson (src/common/json.h), which
# bounds size, nesting depth and value count before building a DOM. Tests may parse freely.
#   cmake -DSRC=<source tree>/src -P check_json_parse.cmake
cmake_minimum_required(VERSION 3.25)
if(NOT SRC)
  message(FATAL_ERROR "pass -DSRC=<source tree>/src")
endif()
file(GLOB_RECURSE files RELATIVE ${SRC} ${SRC}/*.cc ${SRC}/*.h ${SRC}/*.hpp)
set(found "")
foreach(f IN LISTS files)
  if(f MATCHES "_test\\.cc$" OR f STREQUAL "common/json.cc" OR f STREQUAL "common/json.h")
    continue()
  endif()
  file(STRINGS ${SRC}/${f} hits REGEX "json::(parse|accept|sax_parse)[ \t]*\\(")
  foreach(line IN LISTS hits)
    string(STRIP "${line}" line)
    string(APPEND found "  src/${f}: ${line}\n")
  endforeach()
endforeach()
if(found)
  message(FATAL_ERROR
    "JSON parsed outside ds::ParseJson (use ParseJson / ParseJsonObject / ParseJsonOr from "
    "common/json.h):\n${found}")
endif()
message(STATUS "every JSON parse in src/ goes through ds::ParseJson")

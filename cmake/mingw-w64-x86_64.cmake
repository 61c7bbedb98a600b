# CMake toolchain file: cross-build 64-bit Windows programs on Debian with MinGW-w64.
#
# Uses the "-posix" compilers (the default "-win32" GCC 12 has no std::thread / std::mutex) and
# links everything statically (libgcc, libstdc++, winpthread), so an .exe needs only system DLLs.
#
# The third-party libraries come from the prefix that scripts/windows/build-deps.sh builds; give
# it as -DDATASYNC_WIN_DEPS=<prefix> or in the environment variable of the same name. Packages are
# searched only there and in the MinGW sysroot, never in the Linux /usr.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(_datasync_triple x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${_datasync_triple}-gcc-posix)
set(CMAKE_CXX_COMPILER ${_datasync_triple}-g++-posix)
set(CMAKE_RC_COMPILER ${_datasync_triple}-windres)
set(CMAKE_AR ${_datasync_triple}-gcc-ar-posix CACHE FILEPATH "archiver")
set(CMAKE_RANLIB ${_datasync_triple}-gcc-ranlib-posix CACHE FILEPATH "ranlib")

if(NOT DATASYNC_WIN_DEPS AND DEFINED ENV{DATASYNC_WIN_DEPS})
  set(DATASYNC_WIN_DEPS "$ENV{DATASYNC_WIN_DEPS}")
endif()
set(DATASYNC_WIN_DEPS "${DATASYNC_WIN_DEPS}" CACHE PATH
    "prefix of the Windows third-party libraries (scripts/windows/build-deps.sh)")
# try_compile() projects read this file again: hand them the prefix too.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES DATASYNC_WIN_DEPS)

set(CMAKE_FIND_ROOT_PATH /usr/${_datasync_triple})
if(DATASYNC_WIN_DEPS)
  list(PREPEND CMAKE_FIND_ROOT_PATH "${DATASYNC_WIN_DEPS}")
  list(APPEND CMAKE_PREFIX_PATH "${DATASYNC_WIN_DEPS}")
endif()
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)  # build tools (tclsh, ninja) run on Linux
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# -static: libgcc, libstdc++ and libwinpthread are linked in; scripts/windows/smoke.sh checks that
# the .exe imports only system DLLs.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")

# Run cross-built test programs (ctest, gtest_discover_tests) under Wine.
find_program(DATASYNC_WINE wine)
if(DATASYNC_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${DATASYNC_WINE}")
endif()

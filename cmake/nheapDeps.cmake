# The C libraries nheap links, as imported targets nheap::dep_<name>.
# Used by the build and installed beside nheapConfig.cmake, so that consumers of the static
# library resolve the same dependencies. Each is found with find_path/find_library: libpfm4 ships
# no .pc file and no CMake config, and one way for all keeps the installed config free of
# pkg-config. Threads come from CMake's own FindThreads.
include(CMakeFindDependencyMacro)
find_dependency(Threads)

function(nheap_find_c_library name header library package)
  if(TARGET nheap::dep_${name})
    return()
  endif()
  find_path(NHEAP_${name}_INCLUDE_DIR ${header})
  find_library(NHEAP_${name}_LIBRARY ${library})
  if(NOT NHEAP_${name}_INCLUDE_DIR OR NOT NHEAP_${name}_LIBRARY)
    set(NHEAP_DEPS_MISSING "${NHEAP_DEPS_MISSING} ${package}" PARENT_SCOPE)
    return()
  endif()
  add_library(nheap::dep_${name} UNKNOWN IMPORTED)
  set_target_properties(nheap::dep_${name} PROPERTIES
    IMPORTED_LOCATION "${NHEAP_${name}_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${NHEAP_${name}_INCLUDE_DIR}")
endfunction()

set(NHEAP_DEPS_MISSING "")
nheap_find_c_library(uring liburing.h                  uring liburing-dev)
nheap_find_c_library(numa  numa.h                      numa  libnuma-dev)
nheap_find_c_library(pfm   perfmon/pfmlib_perf_event.h pfm   libpfm4-dev)
nheap_find_c_library(inih  ini.h                       inih  libinih-dev)

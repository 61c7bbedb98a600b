// The request target's decoding (path segments, query keys and values): no bytes crash it, a
// decoded value never holds NUL, and what PercentEncode makes decodes back to the same bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "http/http_types.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  for (bool plus_is_space : {false, true}) {
    auto decoded = ds::http::PercentDecode(in, plus_is_space);
    if (decoded.ok() && decoded->find('\0') != std::string::npos) __builtin_trap();
  }
  if (in.find('\0') == std::string::npos) {
    auto back = ds::http::PercentDecode(ds::http::PercentEncode(in), false);
    if (!back.ok() || *back != in) __builtin_trap();
  }
  return 0;
}

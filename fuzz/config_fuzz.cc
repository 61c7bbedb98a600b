// The TOML config file (every flag of both daemons): no bytes crash the reader, and every flag it
// makes has the `--key` or `--key=value` shape the command-line parsers expect.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto flags = ds::ConfigFlags(text, "fuzz.toml");
  if (!flags.ok()) return 0;
  for (const auto& flag : *flags) {
    if (flag.size() < 3 || flag.rfind("--", 0) != 0) __builtin_trap();
  }
  return 0;
}

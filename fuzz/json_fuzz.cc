// ds::ParseJson, the one way outside JSON becomes a DOM: no bytes crash it, what it accepts is
// within its limits (depth, values) by an independent iterative walk, and dumps and re-parses to
// the same value (so no stored value can later overflow a recursive dump).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "common/json.h"

namespace {

// Depth and value count of `doc` without recursion (object keys count as values).
std::pair<size_t, size_t> Shape(const nlohmann::json& doc) {
  size_t max_depth = 0, values = 0;
  std::vector<std::pair<const nlohmann::json*, size_t>> stack{{&doc, 0}};
  while (!stack.empty()) {
    auto [v, depth] = stack.back();
    stack.pop_back();
    ++values;
    if (!v->is_structured()) continue;
    max_depth = std::max(max_depth, depth + 1);
    if (v->is_object()) values += v->size();
    for (const auto& child : *v) stack.emplace_back(&child, depth + 1);
  }
  return {max_depth, values};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  ds::JsonLimits limits;
  limits.max_depth = 8;
  limits.max_values = 512;
  auto doc = ds::ParseJson(text, limits);
  if (!doc.ok()) return 0;
  auto [depth, values] = Shape(*doc);
  if (depth > limits.max_depth || values > limits.max_values) __builtin_trap();
  const std::string dumped = doc->dump();
  auto again = ds::ParseJson(dumped, limits);
  if (!again.ok() || *again != *doc) __builtin_trap();
  return 0;
}

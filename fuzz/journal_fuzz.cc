// The agent journal's batch decoders read blobs from disk, which may be damaged: no bytes crash
// them or make them allocate beyond the blob's size, and what they accept encodes to bytes that
// decode to the same entries.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/journal_codec.h"

namespace {

using ds::protocol::FileResult;
namespace codec = ds::journal_codec;

bool Same(const FileResult& a, const FileResult& b) {
  return a.path == b.path && a.status == b.status && a.size == b.size && a.mtime_ns == b.mtime_ns &&
         a.sha256 == b.sha256 && a.error == b.error && a.kept_version == b.kept_version;
}

void CheckResults(std::string_view in) {
  std::vector<FileResult> decoded;
  if (!codec::DecodeResults(in, &decoded)) return;
  if (decoded.size() > in.size()) __builtin_trap();  // every entry takes bytes
  std::string again;
  for (const auto& r : decoded) codec::AppendResult(again, r);
  std::vector<FileResult> back;
  if (!codec::DecodeResults(again, &back) || back.size() != decoded.size()) __builtin_trap();
  for (size_t i = 0; i < back.size(); ++i) {
    if (!Same(back[i], decoded[i])) __builtin_trap();
  }
}

void CheckInFlight(std::string_view in) {
  std::vector<std::pair<std::string, std::string>> decoded;
  if (!codec::DecodeInFlight(in, &decoded)) return;
  if (decoded.size() > in.size()) __builtin_trap();
  std::string again;
  for (const auto& [path, key] : decoded) codec::AppendInFlight(again, path, key);
  std::vector<std::pair<std::string, std::string>> back;
  if (!codec::DecodeInFlight(again, &back) || back != decoded) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  CheckResults(in);
  CheckInFlight(in);
  return 0;
}

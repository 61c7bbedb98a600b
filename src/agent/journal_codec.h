// The agent journal's batch encoding: a batch of results (or of in-flight marks) is one blob of
// entries, unsigned LEB128 varints and strings as a varint length followed by the bytes. The
// decoders read a blob from disk, which may be damaged: they check every length against what is
// left and never allocate more than the blob's size.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/messages.h"

namespace ds::journal_codec {

void AppendResult(std::string& out, const protocol::FileResult& r);
void AppendInFlight(std::string& out, std::string_view path, std::string_view key);

// Appends the entries of `in` to *out; false when `in` is not a whole number of entries (what
// was decoded before the damage stays in *out).
[[nodiscard]] bool DecodeResults(std::string_view in, std::vector<protocol::FileResult>* out);
[[nodiscard]] bool DecodeInFlight(std::string_view in,
                                  std::vector<std::pair<std::string, std::string>>* out);

}  // namespace ds::journal_codec

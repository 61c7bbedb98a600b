// Every message the server or the agent decodes off the wire. Decode never crashes on any bytes,
// and what it accepts survives Encode -> Decode unchanged (the codec has one meaning per value).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/messages.h"

namespace {

using namespace ds::protocol;

template <typename T>
void RoundTrip(std::string_view body) {
  absl::StatusOr<T> value = Decode<T>(body);
  if (!value.ok()) return;
  const std::string once = Encode(*value);
  absl::StatusOr<T> again = Decode<T>(once);
  if (!again.ok() || Encode(*again) != once) __builtin_trap();
}

using Checker = void (*)(std::string_view);
constexpr Checker kMessages[] = {
    // what the server decodes
    RoundTrip<RegisterRequest>, RoundTrip<HeartbeatRequest>, RoundTrip<CompareRequest>,
    RoundTrip<GrantRequest>, RoundTrip<CompleteRequest>, RoundTrip<LogBatch>,
    // what the agent decodes
    RoundTrip<RegisterResponse>, RoundTrip<EnrollmentStatus>, RoundTrip<HeartbeatResponse>,
    RoundTrip<CommandsResponse>, RoundTrip<CompareResponse>, RoundTrip<GrantResponse>,
    RoundTrip<CompleteResponse>, RoundTrip<LogBatchResponse>, RoundTrip<Problem>,
    RoundTrip<RunSummary>};

}  // namespace

// The first byte picks the message type, the rest is the body.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  kMessages[data[0] % std::size(kMessages)](body);
  return 0;
}

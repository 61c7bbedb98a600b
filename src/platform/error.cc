#include "platform/error.h"

#include <string>

#include "absl/strings/cord.h"

namespace ds::platform {
namespace {

constexpr char kKindPayload[] = "type.datasync/platform.error-kind";

}  // namespace

absl::Status WithKind(absl::Status status, ErrorKind kind) {
  if (!status.ok() && kind != ErrorKind::kOther) {
    status.SetPayload(kKindPayload, absl::Cord(std::to_string(static_cast<int>(kind))));
  }
  return status;
}

ErrorKind KindOf(const absl::Status& status) {
  auto payload = status.GetPayload(kKindPayload);
  if (!payload.has_value()) return ErrorKind::kOther;
  const std::string s(*payload);
  if (s.empty() || s.size() > 2) return ErrorKind::kOther;
  return static_cast<ErrorKind>(std::stoi(s));
}

}  // namespace ds::platform

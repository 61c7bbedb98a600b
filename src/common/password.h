// Operator passwords (Argon2id, libargon2). Secrets compare with ConstantTimeEquals (crypto.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ds {

// Argon2id cost: OWASP's 2023 minimum (19 MiB, 2 passes, 1 lane) costs ~30 ms here.
struct PasswordCost {
  uint32_t memory_kib = 19 * 1024;
  uint32_t iterations = 2;
  uint32_t lanes = 1;
};

// Passwords must be 8..1024 bytes (InvalidArgument otherwise, with the reason).
[[nodiscard]] absl::Status CheckPasswordPolicy(std::string_view password);

// The encoded Argon2id string ("$argon2id$v=19$m=...,t=...,p=...$salt$hash") of `password` with a
// fresh 16-byte random salt. Internal on a libargon2 failure.
[[nodiscard]] absl::StatusOr<std::string> HashPassword(std::string_view password,
                                                       const PasswordCost& cost = {});

// Whether `password` matches `encoded` (an Argon2id string from HashPassword; the cost is read
// from it). libargon2 compares in constant time. False for a malformed `encoded`.
bool VerifyPassword(std::string_view password, const std::string& encoded);

// Spends the same time as a VerifyPassword against a real hash, for unknown user names, so that
// response times do not tell which names exist.
void BurnPasswordVerification(std::string_view password);

}  // namespace ds

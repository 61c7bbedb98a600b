#include "common/password.h"

#include <argon2.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"

namespace ds {
namespace {

constexpr size_t kMinPasswordBytes = 8;
constexpr size_t kMaxPasswordBytes = 1024;
constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;

}  // namespace

absl::Status CheckPasswordPolicy(std::string_view password) {
  if (password.size() < kMinPasswordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("password must be at least ", kMinPasswordBytes, " characters"));
  }
  if (password.size() > kMaxPasswordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("password must be at most ", kMaxPasswordBytes, " bytes"));
  }
  if (password.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("password must not contain NUL");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> HashPassword(std::string_view password, const PasswordCost& cost) {
  if (password.size() > kMaxPasswordBytes) return absl::InvalidArgumentError("password too long");
  const std::string salt = RandomBytes(kSaltBytes);
  const size_t len = argon2_encodedlen(cost.iterations, cost.memory_kib, cost.lanes, kSaltBytes,
                                       kHashBytes, Argon2_id);
  std::vector<char> encoded(len);
  const int rc = argon2id_hash_encoded(cost.iterations, cost.memory_kib, cost.lanes,
                                       password.data(), password.size(), salt.data(), salt.size(),
                                       kHashBytes, encoded.data(), encoded.size());
  if (rc != ARGON2_OK) {
    return absl::InternalError(absl::StrCat("argon2id: ", argon2_error_message(rc)));
  }
  return std::string(encoded.data());
}

bool VerifyPassword(std::string_view password, const std::string& encoded) {
  if (password.size() > kMaxPasswordBytes || encoded.rfind("$argon2id$", 0) != 0) return false;
  return argon2id_verify(encoded.c_str(), password.data(), password.size()) == ARGON2_OK;
}

void BurnPasswordVerification(std::string_view password) {
  static const std::string kDummy = [] {
    auto h = HashPassword("not-a-real-password");
    return h.ok() ? *h : std::string();
  }();
  (void)VerifyPassword(password, kDummy);
}

}  // namespace ds

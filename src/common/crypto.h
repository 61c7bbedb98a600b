// Hashing, randomness and symmetric encryption, all on OpenSSL 3 (EVP).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ds {

using Sha256Digest = std::array<uint8_t, 32>;  // a raw SHA-256

// Incremental SHA-256. Not thread-safe; one instance per stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t len);
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  // Returns the lowercase hex digest. REQUIRES: called once; the object is spent afterwards.
  std::string FinishHex();
  // Returns the raw digest. REQUIRES: called once (instead of FinishHex).
  Sha256Digest Finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Lowercase hex of a raw digest; and back (false unless exactly 64 hex digits, either case).
std::string Sha256DigestHex(const Sha256Digest& d);
void AppendSha256DigestHex(const Sha256Digest& d, std::string* out);
bool ParseSha256Hex(std::string_view hex, Sha256Digest* out);

std::string Sha256Hex(std::string_view data);

// Incremental MD5, only where a protocol demands it for transport integrity (Azure Content-MD5);
// never to identify content. Not thread-safe.
class Md5 {
 public:
  Md5();
  ~Md5();
  Md5(const Md5&) = delete;
  Md5& operator=(const Md5&) = delete;

  void Update(const void* data, size_t len);
  // Returns the base64 digest. REQUIRES: called once; the object is spent afterwards.
  std::string FinishBase64();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string Md5Base64(std::string_view data);

struct FileDigest {
  std::string sha256;  // lowercase hex
  uint64_t size = 0;   // bytes
};
// Reads the whole file once. Fails with NotFound / PermissionDenied / Internal.
[[nodiscard]] absl::StatusOr<FileDigest> Sha256File(const std::filesystem::path& path);

std::string HmacSha256(std::string_view key, std::string_view data);  // raw 32 bytes

std::string RandomBytes(size_t n);  // cryptographically secure
std::string HexEncode(std::string_view raw);
std::string Base64Encode(std::string_view raw);
[[nodiscard]] absl::StatusOr<std::string> Base64Decode(std::string_view b64);
std::string Base64UrlEncode(std::string_view raw);  // no padding
std::string NewUuid();  // random (v4) UUID, lowercase
bool IsValidUuid(std::string_view s);
// Compares in time independent of where the inputs differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// AES-256-GCM. `key` is 32 raw bytes. Output: 12-byte nonce || ciphertext || 16-byte tag.
[[nodiscard]] absl::StatusOr<std::string> SealAesGcm(std::string_view key, std::string_view plain,
                                                     std::string_view associated_data);
// Fails with DataLoss when the tag does not verify (wrong key or tampered data).
[[nodiscard]] absl::StatusOr<std::string> OpenAesGcm(std::string_view key, std::string_view sealed,
                                                     std::string_view associated_data);
// HKDF-SHA256, returns `length` raw bytes.
std::string HkdfSha256(std::string_view secret, std::string_view salt, std::string_view info,
                       size_t length);

}  // namespace ds

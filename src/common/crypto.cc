#include "common/crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "platform/file.h"

namespace ds {

namespace {

// One EVP message digest context; the digest classes below are thin names for it.
class EvpDigest {
 public:
  explicit EvpDigest(const EVP_MD* md) : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, md, nullptr) != 1) {
      throw std::runtime_error("EVP digest init failed");  // out of memory: nothing to recover
    }
  }
  ~EvpDigest() { EVP_MD_CTX_free(ctx_); }
  EvpDigest(const EvpDigest&) = delete;
  EvpDigest& operator=(const EvpDigest&) = delete;

  void Update(const void* data, size_t len) {
    if (len > 0) EVP_DigestUpdate(ctx_, data, len);
  }
  std::string Finish() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    return std::string(reinterpret_cast<const char*>(md), len);
  }

 private:
  EVP_MD_CTX* ctx_;
};

}  // namespace

struct Sha256::Impl : EvpDigest {
  Impl() : EvpDigest(EVP_sha256()) {}
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {}
Sha256::~Sha256() = default;
void Sha256::Update(const void* data, size_t len) { impl_->Update(data, len); }
std::string Sha256::FinishHex() { return HexEncode(impl_->Finish()); }
Sha256Digest Sha256::Finish() {
  std::string raw = impl_->Finish();
  Sha256Digest d{};
  std::memcpy(d.data(), raw.data(), std::min(raw.size(), d.size()));
  return d;
}

void AppendSha256DigestHex(const Sha256Digest& d, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  const size_t at = out->size();
  out->resize(at + 64);
  char* p = out->data() + at;
  for (uint8_t b : d) {
    *p++ = kHex[b >> 4];
    *p++ = kHex[b & 15];
  }
}

std::string Sha256DigestHex(const Sha256Digest& d) {
  std::string out;
  AppendSha256DigestHex(d, &out);
  return out;
}

bool ParseSha256Hex(std::string_view hex, Sha256Digest* out) {
  if (hex.size() != 64) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

struct Md5::Impl : EvpDigest {
  Impl() : EvpDigest(EVP_md5()) {}
};

Md5::Md5() : impl_(std::make_unique<Impl>()) {}
Md5::~Md5() = default;
void Md5::Update(const void* data, size_t len) { impl_->Update(data, len); }
std::string Md5::FinishBase64() { return Base64Encode(impl_->Finish()); }

std::string Md5Base64(std::string_view data) {
  Md5 md5;
  md5.Update(data.data(), data.size());
  return md5.FinishBase64();
}

std::string Sha256Hex(std::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.FinishHex();
}

absl::StatusOr<FileDigest> Sha256File(const std::filesystem::path& path) {
  platform::OpenOptions options;
  options.follow_links = true;
  DS_ASSIGN_OR_RETURN(platform::File file, platform::File::Open(path, options));
  file.AdviseSequential();
  Sha256 h;
  FileDigest out;
  std::vector<char> buf(1 << 20);
  for (;;) {
    DS_ASSIGN_OR_RETURN(size_t n, file.Read(absl::MakeSpan(buf)));
    if (n == 0) break;
    h.Update(buf.data(), n);
    out.size += n;
  }
  out.sha256 = h.FinishHex();
  return out;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    throw std::runtime_error("RAND_bytes failed");  // no entropy: cannot continue safely
  }
  return out;
}

std::string HexEncode(std::string_view raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

std::string Base64Encode(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()),
                          static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

absl::StatusOr<std::string> Base64Decode(std::string_view b64) {
  if (b64.size() % 4 != 0) return absl::InvalidArgumentError("base64 length not a multiple of 4");
  std::string out(3 * b64.size() / 4 + 1, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(b64.data()),
                          static_cast<int>(b64.size()));
  if (n < 0) return absl::InvalidArgumentError("invalid base64");
  size_t pad = 0;
  if (!b64.empty() && b64.back() == '=') ++pad;
  if (b64.size() > 1 && b64[b64.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

std::string Base64UrlEncode(std::string_view raw) {
  std::string s = Base64Encode(raw);
  for (char& c : s) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

std::string NewUuid() {
  std::string b = RandomBytes(16);
  b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);
  std::string h = HexEncode(b);
  return absl::StrCat(h.substr(0, 8), "-", h.substr(8, 4), "-", h.substr(12, 4), "-",
                      h.substr(16, 4), "-", h.substr(20));
}

bool IsValidUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char d = 0;
  for (size_t i = 0; i < a.size(); ++i) d |= static_cast<unsigned char>(a[i] ^ b[i]);
  return d == 0;
}

namespace {
constexpr size_t kNonceLen = 12;
constexpr size_t kTagLen = 16;

struct CipherCtx {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx); }
};
}  // namespace

absl::StatusOr<std::string> SealAesGcm(std::string_view key, std::string_view plain,
                                       std::string_view ad) {
  if (key.size() != 32) return absl::InvalidArgumentError("AES-256 key must be 32 bytes");
  std::string nonce = RandomBytes(kNonceLen);
  CipherCtx c;
  int len = 0;
  std::string out = nonce;
  out.resize(kNonceLen + plain.size() + kTagLen);
  auto* o = reinterpret_cast<unsigned char*>(out.data()) + kNonceLen;
  if (EVP_EncryptInit_ex(c.ctx, EVP_aes_256_gcm(), nullptr,
                         reinterpret_cast<const unsigned char*>(key.data()),
                         reinterpret_cast<const unsigned char*>(nonce.data())) != 1 ||
      EVP_EncryptUpdate(c.ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(ad.data()),
                        static_cast<int>(ad.size())) != 1 ||
      EVP_EncryptUpdate(c.ctx, o, &len, reinterpret_cast<const unsigned char*>(plain.data()),
                        static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(c.ctx, o + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_GET_TAG, kTagLen, o + plain.size()) != 1) {
    return absl::InternalError("AES-GCM encryption failed");
  }
  return out;
}

absl::StatusOr<std::string> OpenAesGcm(std::string_view key, std::string_view sealed,
                                       std::string_view ad) {
  if (key.size() != 32) return absl::InvalidArgumentError("AES-256 key must be 32 bytes");
  if (sealed.size() < kNonceLen + kTagLen) return absl::DataLossError("sealed data too short");
  size_t clen = sealed.size() - kNonceLen - kTagLen;
  std::string out(clen, '\0');
  CipherCtx c;
  int len = 0;
  auto* in = reinterpret_cast<const unsigned char*>(sealed.data());
  std::string tag(sealed.substr(kNonceLen + clen));
  if (EVP_DecryptInit_ex(c.ctx, EVP_aes_256_gcm(), nullptr,
                         reinterpret_cast<const unsigned char*>(key.data()), in) != 1 ||
      EVP_DecryptUpdate(c.ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(ad.data()),
                        static_cast<int>(ad.size())) != 1 ||
      EVP_DecryptUpdate(c.ctx, reinterpret_cast<unsigned char*>(out.data()), &len,
                        in + kNonceLen, static_cast<int>(clen)) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_SET_TAG, kTagLen, tag.data()) != 1) {
    return absl::DataLossError("AES-GCM decryption failed");
  }
  if (EVP_DecryptFinal_ex(c.ctx, reinterpret_cast<unsigned char*>(out.data()) + len, &len) != 1) {
    return absl::DataLossError("authentication tag mismatch (wrong key or tampered data)");
  }
  return out;
}

std::string HkdfSha256(std::string_view secret, std::string_view salt, std::string_view info,
                       size_t length) {
  std::string out(length, '\0');
  EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  size_t outlen = length;
  if (pctx == nullptr || EVP_PKEY_derive_init(pctx) <= 0 ||
      EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_salt(pctx, reinterpret_cast<const unsigned char*>(salt.data()),
                                  static_cast<int>(salt.size())) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_key(pctx, reinterpret_cast<const unsigned char*>(secret.data()),
                                 static_cast<int>(secret.size())) <= 0 ||
      EVP_PKEY_CTX_add1_hkdf_info(pctx, reinterpret_cast<const unsigned char*>(info.data()),
                                  static_cast<int>(info.size())) <= 0 ||
      EVP_PKEY_derive(pctx, reinterpret_cast<unsigned char*>(out.data()), &outlen) <= 0) {
    EVP_PKEY_CTX_free(pctx);
    throw std::runtime_error("HKDF failed");
  }
  EVP_PKEY_CTX_free(pctx);
  return out;
}

}  // namespace ds

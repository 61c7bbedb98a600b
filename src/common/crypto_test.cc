#include "common/crypto.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "gtest/gtest.h"

namespace ds {
namespace {

namespace fs = std::filesystem;

constexpr char kEmptySha[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kAbcSha[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

std::string Unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), kEmptySha);
  EXPECT_EQ(Sha256Hex("abc"), kAbcSha);
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 empty;
  EXPECT_EQ(empty.FinishHex(), kEmptySha);
}

TEST(Sha256Test, IncrementalEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 100'000; ++i) data.push_back(static_cast<char>(i * 31));
  Sha256 h;
  size_t off = 0;
  for (size_t step : {0, 1, 63, 64, 65, 1000, 4096}) {
    h.Update(data.substr(off, step));
    off += step;
  }
  h.Update(data.data() + off, data.size() - off);
  EXPECT_EQ(h.FinishHex(), Sha256Hex(data));
}

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "crypto_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
};

using Sha256FileTest = TempDirTest;

TEST_F(Sha256FileTest, MatchesInMemoryHash) {
  std::string data(3 * (1 << 20) + 17, 'z');  // spans several read chunks
  std::ofstream(dir_ / "big", std::ios::binary) << data;
  std::ofstream(dir_ / "empty", std::ios::binary);
  absl::StatusOr<FileDigest> d = Sha256File(dir_ / "big");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->sha256, Sha256Hex(data));
  EXPECT_EQ(d->size, data.size());
  d = Sha256File(dir_ / "empty");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->sha256, kEmptySha);
  EXPECT_EQ(d->size, 0u);
}

TEST_F(Sha256FileTest, Errors) {
  EXPECT_TRUE(absl::IsNotFound(Sha256File(dir_ / "missing").status()));
  if (::geteuid() != 0) {
    std::ofstream(dir_ / "locked") << "x";
    fs::permissions(dir_ / "locked", fs::perms::none);
    EXPECT_TRUE(absl::IsPermissionDenied(Sha256File(dir_ / "locked").status()));
  }
}

TEST(HmacSha256Test, Rfc4231Case2) {
  EXPECT_EQ(HexEncode(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(EncodingTest, HexEncode) {
  EXPECT_EQ(HexEncode(""), "");
  EXPECT_EQ(HexEncode(std::string("\x00\x01\x7f\x80\xff", 5)), "00017f80ff");
  EXPECT_EQ(HexEncode("AZ"), "415a");
}

TEST(EncodingTest, Base64Rfc4648Vectors) {
  const std::pair<const char*, const char*> kVectors[] = {{"", ""},
                                                          {"f", "Zg=="},
                                                          {"fo", "Zm8="},
                                                          {"foo", "Zm9v"},
                                                          {"foob", "Zm9vYg=="},
                                                          {"fooba", "Zm9vYmE="},
                                                          {"foobar", "Zm9vYmFy"}};
  for (const auto& [raw, b64] : kVectors) {
    EXPECT_EQ(Base64Encode(raw), b64);
    absl::StatusOr<std::string> d = Base64Decode(b64);
    ASSERT_TRUE(d.ok()) << b64 << ": " << d.status();
    EXPECT_EQ(*d, raw);
  }
}

TEST(EncodingTest, Base64RoundTripsBinary) {
  for (size_t n = 0; n < 70; ++n) {
    std::string raw = RandomBytes(n);
    absl::StatusOr<std::string> d = Base64Decode(Base64Encode(raw));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(*d, raw) << n;
  }
}

TEST(EncodingTest, Base64RejectsMalformed) {
  EXPECT_TRUE(absl::IsInvalidArgument(Base64Decode("Zm9").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(Base64Decode("Zm9v!!==").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(Base64Decode("Zm9vY*==").status()));
}

TEST(EncodingTest, Base64UrlHasNoPaddingOrUnsafeChars) {
  EXPECT_EQ(Base64UrlEncode("f"), "Zg");
  EXPECT_EQ(Base64UrlEncode("\xfb\xff\xbf"), "-_-_");
  EXPECT_EQ(Base64Encode("\xfb\xff\xbf"), "+/+/");
}

TEST(RandomTest, RandomBytesLengthAndVariety) {
  EXPECT_EQ(RandomBytes(0).size(), 0u);
  EXPECT_EQ(RandomBytes(33).size(), 33u);
  EXPECT_NE(RandomBytes(16), RandomBytes(16));
}

TEST(UuidTest, NewUuidIsValidV4AndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string u = NewUuid();
    EXPECT_TRUE(IsValidUuid(u)) << u;
    EXPECT_EQ(u[14], '4') << u;
    EXPECT_NE(std::string("89ab").find(u[19]), std::string::npos) << u;
    seen.insert(u);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(UuidTest, IsValidUuidRejectsMalformed) {
  EXPECT_TRUE(IsValidUuid("123e4567-e89b-42d3-a456-426614174000"));
  EXPECT_FALSE(IsValidUuid(""));
  EXPECT_FALSE(IsValidUuid("123E4567-E89B-42D3-A456-426614174000"));  // uppercase
  EXPECT_FALSE(IsValidUuid("123e4567e89b42d3a456426614174000"));
  EXPECT_FALSE(IsValidUuid("123e4567-e89b-42d3-a456-42661417400"));
  EXPECT_FALSE(IsValidUuid("123e4567-e89b-42d3-a456-4266141740000"));
  EXPECT_FALSE(IsValidUuid("123e4567-e89b-42d3-a456_426614174000"));
  EXPECT_FALSE(IsValidUuid("123e4567-e89b-42d3-a456-42661417400g"));
}

TEST(ConstantTimeEqualsTest, ComparesContent) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
}

TEST(AesGcmTest, RoundTrip) {
  const std::string key = RandomBytes(32);
  for (const std::string& plain : {std::string(), std::string("hello"), RandomBytes(10'000)}) {
    absl::StatusOr<std::string> sealed = SealAesGcm(key, plain, "ad");
    ASSERT_TRUE(sealed.ok()) << sealed.status();
    EXPECT_EQ(sealed->size(), 12 + plain.size() + 16);
    absl::StatusOr<std::string> opened = OpenAesGcm(key, *sealed, "ad");
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(*opened, plain);
  }
  // A fresh nonce each time: equal plaintexts give different ciphertexts.
  EXPECT_NE(*SealAesGcm(key, "same", ""), *SealAesGcm(key, "same", ""));
}

TEST(AesGcmTest, TamperWrongKeyAndWrongAssociatedDataAreDataLoss) {
  const std::string key = RandomBytes(32);
  absl::StatusOr<std::string> sealed = SealAesGcm(key, "measurement secret", "runner-1");
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  for (size_t i : {size_t{0}, size_t{12}, sealed->size() - 1}) {  // nonce, ciphertext, tag
    std::string tampered = *sealed;
    tampered[i] = static_cast<char>(tampered[i] ^ 0x01);
    EXPECT_TRUE(absl::IsDataLoss(OpenAesGcm(key, tampered, "runner-1").status())) << i;
  }
  EXPECT_TRUE(absl::IsDataLoss(OpenAesGcm(RandomBytes(32), *sealed, "runner-1").status()));
  EXPECT_TRUE(absl::IsDataLoss(OpenAesGcm(key, *sealed, "runner-2").status()));
  EXPECT_TRUE(absl::IsDataLoss(OpenAesGcm(key, sealed->substr(0, 27), "runner-1").status()));
}

TEST(AesGcmTest, KeyMustBe32Bytes) {
  EXPECT_TRUE(absl::IsInvalidArgument(SealAesGcm("short", "x", "").status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(OpenAesGcm(std::string(31, 'k'), std::string(40, 'x'), "").status()));
}

TEST(HkdfTest, Rfc5869Case1) {
  std::string okm =
      HkdfSha256(Unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
                 Unhex("000102030405060708090a0b0c"), Unhex("f0f1f2f3f4f5f6f7f8f9"), 42);
  EXPECT_EQ(HexEncode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

}  // namespace
}  // namespace ds

namespace ds {
namespace {

TEST(Md5Test, KnownVectorsAndIncremental) {
  EXPECT_EQ(Md5Base64(""), "1B2M2Y8AsgTpgAmY7PhCfg==");
  EXPECT_EQ(Md5Base64("abc"), "kAFQmDzST7DWlj99KOF/cg==");
  Md5 m;
  m.Update("a", 1);
  m.Update("bc", 2);
  EXPECT_EQ(m.FinishBase64(), Md5Base64("abc"));
}

}  // namespace
}  // namespace ds

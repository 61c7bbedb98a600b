// The storage conformance suite: every backend must pass StorageConformanceTest, written only
// against the Storage interface. A backend joins by adding a StorageFactory to the
// INSTANTIATE_TEST_SUITE_P list at the bottom. Backend-specific tests follow the suite.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <regex>
#include <string>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/files.h"
#include "common/paths.h"
#include "common/time_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/azblob/azblob_rest.h"
#include "storage/azblob/azblob_storage.h"
#include "storage/azblob/sas.h"
#include "storage/dir/dir_storage.h"
#include "storage/storage.h"

// PutOptions{.field = ...} deliberately leaves the other fields at their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace ds {
namespace {

// Commits one staged put; its result.
absl::StatusOr<PutResult> CommitOne(Storage& storage, std::unique_ptr<StagedPut> put) {
  std::vector<std::unique_ptr<StagedPut>> staged;
  staged.push_back(std::move(put));
  return std::move(storage.CommitPuts(std::move(staged)).at(0));
}

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;

// ---------------------------------------------------------------------------------------------
// Helpers

fs::path MakeTempDir(const std::string& stem) {
  std::string tmpl = (fs::temp_directory_path() / (stem + "-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

void WriteFile(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string RandomContent(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t j = 0; j < 8 && i + j < n; ++j) out[i + j] = static_cast<char>(v >> (8 * j));
  }
  return out;
}

// Polls `cond` every 5 ms for up to `timeout`.
bool WaitFor(const std::function<bool()>& cond,
             std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

// ---------------------------------------------------------------------------------------------
// What a backend provides to the suite.

// One fresh, empty backend instance plus the hooks the suite needs beyond the interface.
struct StorageUnderTest {
  std::unique_ptr<Storage> storage;  // null: backend unavailable here, tests are skipped
  std::string url;                   // the storage URL naming this instance (ParseStorageUrl)
  std::string skip_reason;
  // Non-empty: the backend must be testable here but is not (e.g. Azurite not installed): the
  // test fails with this message instead of being skipped.
  std::string error;
  // Writes `content` under `raw_key`, bypassing the interface and its key checks: plants what a
  // crash or another writer could leave (reserved-area objects, temp files).
  std::function<void(const std::string& raw_key, const std::string& content)> plant_raw;
  // Keys of in-flight/leftover temp objects the backend holds (all of the storage).
  std::function<std::vector<std::string>()> temp_files;
  // Sets the mtime of the object under `raw_key` behind the backend's back, as a share that
  // applies a closed handle's write time late does; empty where the backend has no such thing.
  std::function<void(const std::string& raw_key, int64_t mtime_ns)> move_mtime_raw;
  std::function<void()> cleanup;  // may be empty; called after `storage` is destroyed
  // Whether this instance keeps SHA-256 metadata, so Stat()/List() must report it. When false
  // they may report it or leave it empty, never a wrong one.
  bool stores_sha256 = true;
  // Non-empty: the FUSE client in front of the share (not the share, not the backend) loses an
  // mtime the backend sets; MtimeIsPreserved is skipped with this reason.
  std::string client_loses_mtime;
};

struct StorageFactory {
  std::string name;  // test-name suffix: letters, digits, '_'
  // `scratch` is an empty directory owned by the test, removed afterwards.
  std::function<StorageUnderTest(const fs::path& scratch)> make;
};

void PrintTo(const StorageFactory& f, std::ostream* os) { *os << f.name; }

// Whether files under `dir` can carry user.* xattrs (ext4, xfs, btrfs, tmpfs ≥ 6.6 do; some
// network shares do not).
bool SupportsUserXattrs(const fs::path& dir) {
  const fs::path probe = dir / "xattr-probe";
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool ok = ::fsetxattr(fd, "user.probe", "1", 1, 0) == 0;
  ::close(fd);
  // On smbnetfs the server still holds the file open for a moment after close() (FUSE sends
  // RELEASE asynchronously): unlink fails with EBUSY until it has closed.
  WaitFor([&] { return ::unlink(probe.c_str()) == 0 || errno != EBUSY; });
  return ok;
}

// Why the FUSE client in front of `dir` loses a file's mtime, or "" when it keeps it. Seen with
// libfuse 2 clients (smbnetfs 0.6, bindfs 1.14): futimens() with atime UTIME_OMIT sets the mtime
// to the current time instead, and smbnetfs passes only whole seconds to libsmbclient although
// SMB keeps 100 ns.
std::string ClientLosesMtime(const fs::path& dir) {
  constexpr int64_t kSec = 1'700'000'000, kNsec = 123'456'789;
  const fs::path probe = dir / "mtime-probe";
  std::string why;
  for (bool omit_atime : {true, false}) {
    int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return absl::StrCat("cannot create ", probe.string());
    struct timespec times[2] = {{kSec, omit_atime ? UTIME_OMIT : kNsec}, {kSec, kNsec}};
    const bool set = ::futimens(fd, times) == 0;
    struct stat st {};
    const bool got = ::fstat(fd, &st) == 0;
    ::close(fd);
    WaitFor([&] { return ::unlink(probe.c_str()) == 0 || errno != EBUSY; });
    if (!set || !got) return "futimens/fstat failed";
    if (omit_atime && st.st_mtim.tv_sec != kSec) {
      why = "futimens() with atime UTIME_OMIT sets the mtime to now (libfuse 2 client)";
      break;
    }
    if (!omit_atime && st.st_mtim.tv_sec == kSec && st.st_mtim.tv_nsec == 0) {
      why = "the client keeps whole seconds only (smbnetfs: SMB itself keeps 100 ns)";
    }
  }
  return why;
}

// `unnamed_files` false: group commits stage under temp names, as on filesystems without
// O_TMPFILE (the fallback path).
// The directory backend opened at `root`, with the suite's hooks. SHA-256 metadata is always
// kept: in xattrs, or in sidecar records where there are none.
StorageUnderTest DirUnderTest(const fs::path& root, bool unnamed_files) {
  StorageUnderTest t;
  auto opened = OpenDirStorage(root.string(), DirStorageOptions{.unnamed_files = unnamed_files});
  if (!opened.ok()) {
    t.skip_reason = opened.status().ToString();
    return t;
  }
  t.storage = std::move(*opened);
  t.url = absl::StrCat("file://", root.string());
  t.stores_sha256 = true;
  t.plant_raw = [root](const std::string& raw_key, const std::string& content) {
    WriteFile(root / raw_key, content);
  };
  t.temp_files = [root]() {
    auto temps = ListTempFiles(root.string(), "");
    return temps.ok() ? *temps : std::vector<std::string>{"<ListTempFiles failed>"};
  };
  t.move_mtime_raw = [root](const std::string& raw_key, int64_t mtime_ns) {
    const struct timespec times[2] = {{mtime_ns / 1'000'000'000, mtime_ns % 1'000'000'000},
                                      {mtime_ns / 1'000'000'000, mtime_ns % 1'000'000'000}};
    ASSERT_EQ(::utimensat(AT_FDCWD, (root / raw_key).c_str(), times, 0), 0) << std::strerror(errno);
  };
  return t;
}

StorageFactory DirFactory(bool unnamed_files = true) {
  return {unnamed_files ? "Dir" : "DirTempNames", [unnamed_files](const fs::path& scratch) {
            return DirUnderTest(scratch / "share", unnamed_files);
          }};
}

// smbnetfs only (not SMB): a name the server refuses (NT_STATUS_OBJECT_NAME_INVALID; the
// open-time probe tries one only on case-sensitive shares) makes smbnetfs return EIO and drop its connection to the
// server; until it has reconnected (~20 ms here) every call on the share fails with EIO. Waits
// (up to 5 s) until `root` can be read again, so such a reconnect does not fail the next step.
void WaitUntilShareAnswers(const fs::path& root) {
  WaitFor(
      [&] {
        std::error_code ec;
        fs::directory_iterator it(root, ec);
        return !ec;
      },
      std::chrono::seconds(5));
}

// The directory backend rooted in a directory given from outside, DATASYNC_STORAGE_TEST_DIR: a
// mounted share (tests/fixtures/samba.py mounts a real Samba share through smbnetfs, or bindfs
// --xattr-none; see docs/storage.md "Testing on a real SMB share"). Each test gets a fresh
// folder there, removed afterwards. Unset: the "Share" tests are skipped.
constexpr char kShareDirEnv[] = "DATASYNC_STORAGE_TEST_DIR";

StorageFactory ShareFactory(bool unnamed_files = true) {
  return {unnamed_files ? "Share" : "ShareTempNames", [unnamed_files](const fs::path&) {
            StorageUnderTest t;
            const char* dir = std::getenv(kShareDirEnv);
            if (dir == nullptr || *dir == '\0') {
              t.skip_reason = absl::StrCat(kShareDirEnv, " is not set");
              return t;
            }
            std::string tmpl = (fs::path(dir) / "ds-storage-test-XXXXXX").string();
            if (::mkdtemp(tmpl.data()) == nullptr) {
              t.error = absl::StrCat("mkdtemp in ", dir, ": ", std::strerror(errno));
              return t;
            }
            const fs::path folder = tmpl;
            t.cleanup = [folder] {
              std::error_code ec;
              fs::remove_all(folder, ec);
            };
            const fs::path root = folder / "share";
            StorageUnderTest d = DirUnderTest(root, unnamed_files);
            if (!d.storage) {
              t.error = absl::StrCat("OpenDirStorage on ", root.string(), ": ", d.skip_reason);
              return t;
            }
            d.cleanup = std::move(t.cleanup);
            t = std::move(d);
            WaitUntilShareAnswers(root);
            t.client_loses_mtime = ClientLosesMtime(root);
            return t;
          }};
}

// A real Azurite blob service (npm azurite, path DS_AZURITE_BLOB from CMake) shared by every
// Azure test of this binary: started on first use, stopped after the last test. Each test gets
// a fresh container. Not having Azurite is a test failure, never a skip.
class Azurite {
 public:
  // Azurite's well-known development account and key (public, documented by Microsoft).
  static constexpr char kAccount[] = "devstoreaccount1";
  static constexpr char kKey[] =
      "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

  // The instance, started on the first call. Check error() before use.
  static Azurite& Get() {
    static std::once_flag once;
    std::call_once(once, [] {
      instance_ = new Azurite();  // stopped by AzuriteEnvironment, freed at exit
      instance_->Start();
    });
    return *instance_;
  }
  static void StopIfStarted() {
    if (instance_ != nullptr) instance_->Stop();
  }

  // Why Azurite is not usable; empty when it runs.
  const std::string& error() const { return error_; }
  // http://127.0.0.1:PORT/devstoreaccount1 (path-style).
  std::string endpoint() const { return absl::StrCat("http://127.0.0.1:", port_, "/", kAccount); }

  // Options for a new, empty container.
  absl::StatusOr<AzBlobOptions> NewContainer(size_t block_size = 8 << 20) {
    AzBlobOptions o;
    o.account = kAccount;
    o.account_key = kKey;
    o.endpoint = endpoint();
    o.container = absl::StrCat("t", next_container_++, "-", HexEncode(RandomBytes(4)));
    o.block_size = block_size;
    DS_RETURN_IF_ERROR(CreateAzBlobContainer(o));
    return o;
  }

 private:
  static int FreePort() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port = ntohs(addr.sin_port);
    }
    ::close(fd);
    return port;
  }

  static bool PortAnswers(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
  }

  std::string LogTail() const {
    auto log = ReadFileToString(location_ / "azurite.log");
    return log.ok() ? log->substr(log->size() > 2000 ? log->size() - 2000 : 0) : "";
  }

  void Start() {
    const fs::path binary = DS_AZURITE_BLOB;
    std::error_code ec;
    if (!fs::exists(binary, ec)) {
      error_ = absl::StrCat("Azurite is not installed (no ", binary.string(),
                            "): run scripts/install-deps.sh, which runs `npm ci` in the repo "
                            "root to install azurite from package.json");
      return;
    }
    location_ = MakeTempDir("ds-azurite");
    port_ = FreePort();
    const std::string port = absl::StrCat(port_);
    const std::string log = (location_ / "azurite.log").string();
    const std::string data = (location_ / "data").string();
    fs::create_directories(data);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test binary
      int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (out >= 0) {
        ::dup2(out, 1);
        ::dup2(out, 2);
      }
      ::execl(binary.c_str(), binary.c_str(), "--location", data.c_str(), "--blobHost", "127.0.0.1",
              "--blobPort", port.c_str(), "--disableTelemetry", "--silent",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (pid_ < 0) {
      error_ = absl::StrCat("fork for Azurite failed: ", std::strerror(errno));
      return;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!PortAnswers(port_)) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        error_ = absl::StrCat("Azurite (", binary.string(), ") exited at start-up: ", LogTail());
        return;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        error_ =
            absl::StrCat("Azurite did not listen on port ", port_, " within 30 s: ", LogTail());
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void Stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      int status = 0;
      while (::waitpid(pid_, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      pid_ = -1;
    }
    if (!location_.empty()) {
      std::error_code ec;
      fs::remove_all(location_, ec);
      location_.clear();
    }
  }

  static inline Azurite* instance_ = nullptr;
  std::string error_;
  fs::path location_;
  int port_ = 0;
  pid_t pid_ = -1;
  int next_container_ = 0;
};

// Stops Azurite after the last test (gtest_main runs the global environments' TearDown).
class AzuriteEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { Azurite::StopIfStarted(); }
};
[[maybe_unused]] const ::testing::Environment* const kAzuriteEnvironment =
    ::testing::AddGlobalTestEnvironment(new AzuriteEnvironment);

// Names of blobs that look like temp files (a component starting with kTempPrefix).
std::vector<std::string> AzTempNames(const AzBlobOptions& options) {
  auto names = ListAzBlobNames(options, "");
  if (!names.ok()) {
    return {absl::StrCat("<ListAzBlobNames failed: ", names.status().ToString(), ">")};
  }
  std::vector<std::string> out;
  for (const std::string& n : *names) {
    if (absl::StrCat("/", n).find(absl::StrCat("/", std::string(kTempPrefix))) !=
        std::string::npos) {
      out.push_back(n);
    }
  }
  return out;
}

StorageFactory AzBlobFactory() {
  return {"AzBlob", [](const fs::path&) {
            StorageUnderTest t;
            Azurite& azurite = Azurite::Get();
            if (!azurite.error().empty()) {
              t.error = azurite.error();
              return t;
            }
            // 1 MiB blocks: the suite's files above 1 MiB take the multi-block path.
            absl::StatusOr<AzBlobOptions> options = azurite.NewContainer(1 << 20);
            if (!options.ok()) {
              t.error = absl::StrCat("cannot create a container in Azurite: ",
                                     options.status().ToString());
              return t;
            }
            auto opened = OpenAzBlobStorage(*options);
            if (!opened.ok()) {
              t.error = absl::StrCat("OpenAzBlobStorage: ", opened.status().ToString());
              return t;
            }
            t.storage = std::move(*opened);
            t.url = absl::StrCat("azblob://", options->account, "/", options->container,
                                 "?endpoint=", options->endpoint);
            t.stores_sha256 = true;
            const AzBlobOptions o = *options;
            t.plant_raw = [o](const std::string& raw_key, const std::string& content) {
              absl::Status s = PutAzBlobRaw(o, raw_key, content);
              ASSERT_TRUE(s.ok()) << s;
            };
            t.temp_files = [o]() { return AzTempNames(o); };
            return t;
          }};
}

// ---------------------------------------------------------------------------------------------
// The conformance suite.

class StorageConformanceTest : public ::testing::TestWithParam<StorageFactory> {
 protected:
  void SetUp() override {
    scratch_ = MakeTempDir("ds-storage-test");
    fs::create_directories(scratch_ / "backend");
    backend_ = GetParam().make(scratch_ / "backend");
    if (!backend_.error.empty()) GTEST_FAIL() << backend_.error;
    if (backend_.storage == nullptr) {
      GTEST_SKIP() << "backend unavailable: " << backend_.skip_reason;
    }
  }

  void TearDown() override {
    backend_.storage.reset();
    if (backend_.cleanup) backend_.cleanup();
    fs::remove_all(scratch_);
  }

  Storage& storage() { return *backend_.storage; }
  StorageUnderTest& under_test() { return backend_; }

  // A new local source file holding `content`.
  fs::path WriteSource(const std::string& content) {
    fs::path p = scratch_ / "sources" / absl::StrCat("source-", next_source_++, ".bin");
    WriteFile(p, content);
    return p;
  }

  absl::StatusOr<PutResult> Put(const std::string& key, const std::string& content,
                                const PutOptions& options = {}) {
    return storage().PutFile(key, WriteSource(content), options);
  }

  // Every listed object under `prefix`, by key. Fails the test on a List error or a duplicate.
  std::map<std::string, ObjectInfo> ListAll(const std::string& prefix) {
    std::map<std::string, ObjectInfo> out;
    absl::Status s = storage().List(prefix, [&](const ObjectInfo& info) {
      EXPECT_TRUE(out.emplace(info.key, info).second) << "listed twice: " << info.key;
    });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  std::vector<std::string> Keys(const std::string& prefix) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : ListAll(prefix)) keys.push_back(k);
    return keys;
  }

  // Checks a SHA-256 the backend reports from its stored metadata.
  void ExpectStoredSha(const std::string& reported, const std::string& expected) {
    if (backend_.stores_sha256) {
      EXPECT_EQ(reported, expected);
    } else {
      EXPECT_THAT(reported, ::testing::AnyOf(IsEmpty(), ::testing::Eq(expected)));
    }
  }

  // Asserts a put of `key` left nothing behind: no object, no temp file.
  void ExpectNothingUnder(const std::string& key) {
    EXPECT_TRUE(absl::IsNotFound(storage().Stat(key).status())) << key;
    EXPECT_EQ(ListAll("").count(key), 0u) << key;
    EXPECT_THAT(backend_.temp_files(), IsEmpty());
  }

  fs::path scratch_;
  StorageUnderTest backend_;
  std::atomic<int> next_source_{0};  // WriteSource runs on several threads in some tests
};

TEST_P(StorageConformanceTest, PutThenStatAndReadAllAreByteIdentical) {
  const std::string content = RandomContent(300'001, 1);
  const fs::path source = WriteSource(content);
  auto digest = Sha256File(source);
  ASSERT_TRUE(digest.ok()) << digest.status();

  auto put =
      storage().PutFile("job/run1/data.bin", source, PutOptions{.expected_sha256 = digest->sha256});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.key, "job/run1/data.bin");
  EXPECT_EQ(put->info.size, content.size());
  EXPECT_EQ(put->info.sha256, digest->sha256);
  EXPECT_THAT(put->kept_version, IsEmpty());

  auto info = storage().Stat("job/run1/data.bin");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->key, "job/run1/data.bin");
  EXPECT_EQ(info->size, content.size());
  ExpectStoredSha(info->sha256, digest->sha256);

  auto read = storage().ReadAll("job/run1/data.bin", 1 << 20);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(*read == content);
  EXPECT_THAT(backend_.temp_files(), IsEmpty());
}

TEST_P(StorageConformanceTest, ForgetContentHashDropsTheHashRecordAndKeepsTheBytes) {
  const std::string content = RandomContent(70'000, 7);
  const fs::path source = WriteSource(content);
  auto digest = Sha256File(source);
  ASSERT_TRUE(digest.ok()) << digest.status();
  ASSERT_TRUE(storage().PutFile("job/f.bin", source, PutOptions{.expected_sha256 = digest->sha256}).ok());
  absl::Status st = storage().ForgetContentHash("job/f.bin");
  if (absl::IsUnimplemented(st)) GTEST_SKIP() << "the backend keeps no hash record";
  ASSERT_TRUE(st.ok()) << st;
  auto info = storage().Stat("job/f.bin");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->sha256, "");
  EXPECT_EQ(info->size, content.size());
  auto read = storage().ReadAll("job/f.bin", 1 << 20);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(*read == content);
  // The next put of the same content hashes the object and leaves it in place.
  auto again = storage().PutFile("job/f.bin", source, PutOptions{.expected_sha256 = digest->sha256});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_THAT(again->kept_version, IsEmpty());
  EXPECT_TRUE(absl::IsNotFound(storage().ForgetContentHash("job/absent.bin")));
  EXPECT_TRUE(absl::IsInvalidArgument(storage().ForgetContentHash("../escape")));
}

TEST_P(StorageConformanceTest, RecordContentHashRenewsARecordTheShareMadeStale) {
  constexpr int64_t kSource = 1'600'000'000'000'000'000;
  const std::string content = RandomContent(50'000, 9);
  ASSERT_TRUE(Put("job/s.bin", content, PutOptions{.mtime_ns = kSource}).ok());
  auto fresh = storage().Stat("job/s.bin");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  if (!under_test().move_mtime_raw || storage().Features().metadata_on_object) {
    EXPECT_TRUE(absl::IsUnimplemented(storage().RecordContentHash(*fresh, Sha256Hex(content))));
    GTEST_SKIP() << "metadata lives on the object itself: nothing moves it apart from the object";
  }
  // The share stamps the upload time on the object after its record was written.
  under_test().move_mtime_raw("job/s.bin", kSource + int64_t{86400} * 1'000'000'000);
  const auto stale = ListAll("job").at("job/s.bin");
  ASSERT_EQ(stale.sha256, "") << "a record that no longer matches the object is not trusted";
  auto changed = stale;
  changed.mtime_ns += 1'000'000'000;
  EXPECT_TRUE(absl::IsFailedPrecondition(storage().RecordContentHash(changed, Sha256Hex(content))));
  ASSERT_TRUE(storage().RecordContentHash(stale, Sha256Hex(content)).ok());
  const auto renewed = ListAll("job").at("job/s.bin");
  EXPECT_EQ(renewed.sha256, Sha256Hex(content));
  EXPECT_TRUE(SameMtimeAt(storage().Features(), renewed.mtime_ns, kSource)) << renewed.mtime_ns;
  EXPECT_EQ(*storage().ReadAll("job/s.bin", 1 << 20), content);
}

TEST_P(StorageConformanceTest, EmptyFile) {
  auto put = Put("empty.dat", "");
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.size, 0u);
  EXPECT_EQ(put->info.sha256, Sha256Hex(""));
  auto info = storage().Stat("empty.dat");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, 0u);
  ExpectStoredSha(info->sha256, Sha256Hex(""));
  auto read = storage().ReadAll("empty.dat", 0);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_THAT(*read, IsEmpty());
}

TEST_P(StorageConformanceTest, LargeFile) {
  const std::string content = RandomContent(20 << 20, 2);
  auto put = Put("big/20MiB.raw", content, PutOptions{.expected_sha256 = Sha256Hex(content)});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.size, content.size());
  EXPECT_EQ(put->info.sha256, Sha256Hex(content));
  auto read = storage().ReadAll("big/20MiB.raw", 32 << 20);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->size(), content.size());
  EXPECT_TRUE(*read == content);
}

TEST_P(StorageConformanceTest, UnicodeNames) {
  const std::string key = "Messdaten/Übersicht 2026/μ-probe ü.dat";
  ASSERT_TRUE(Put(key, "µ-data").ok());
  auto info = storage().Stat(key);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->key, key);
  EXPECT_EQ(*storage().ReadAll(key, 100), "µ-data");
  EXPECT_THAT(Keys("Messdaten"), ElementsAre(key));
  EXPECT_THAT(Keys("Messdaten/Übersicht 2026"), ElementsAre(key));
}

TEST_P(StorageConformanceTest, KeysWithSpaces) {
  const std::string key = "run 1/ file  with spaces .csv";
  ASSERT_TRUE(Put(key, "a,b\n").ok());
  EXPECT_TRUE(storage().Stat(key).ok());
  EXPECT_EQ(*storage().ReadAll(key, 100), "a,b\n");
  EXPECT_THAT(Keys("run 1"), ElementsAre(key));
}

TEST_P(StorageConformanceTest, ListHonoursPrefixAndHidesReservedAndTempNames) {
  for (const char* key :
       {"a/1.dat", "a/sub/2.dat", "a/sub/deeper/3.dat", "ab/4.dat", "b/5.dat", "top.dat"}) {
    ASSERT_TRUE(Put(key, key).ok()) << key;
  }
  backend_.plant_raw(".datasync/versions/a/1.dat/20260101T000000Z-0123456789ab", "old");
  backend_.plant_raw("a/.dstmp-0123abcd-0123456789abcdef", "partial");
  backend_.plant_raw(".dstmp-0123abcd-fedcba9876543210", "partial");

  EXPECT_THAT(Keys("a"), UnorderedElementsAre("a/1.dat", "a/sub/2.dat", "a/sub/deeper/3.dat"));
  EXPECT_THAT(Keys("a/sub"), UnorderedElementsAre("a/sub/2.dat", "a/sub/deeper/3.dat"));
  EXPECT_THAT(Keys(""), UnorderedElementsAre("a/1.dat", "a/sub/2.dat", "a/sub/deeper/3.dat",
                                             "ab/4.dat", "b/5.dat", "top.dat"));
  EXPECT_THAT(Keys("missing"), IsEmpty());
  EXPECT_THAT(Keys("top.dat"), IsEmpty());  // an object is not a prefix of itself
  EXPECT_THAT(Keys(".datasync"), IsEmpty());

  const auto all = ListAll("");
  const ObjectInfo& info = all.at("a/sub/2.dat");
  EXPECT_EQ(info.size, std::string("a/sub/2.dat").size());
  ExpectStoredSha(info.sha256, Sha256Hex("a/sub/2.dat"));

  EXPECT_TRUE(absl::IsInvalidArgument(storage().List("../a", [](const ObjectInfo&) {})));
  EXPECT_TRUE(absl::IsInvalidArgument(storage().List("/a", [](const ObjectInfo&) {})));
}

TEST_P(StorageConformanceTest, IdenticalContentTwiceKeepsNoVersion) {
  auto first = Put("same.dat", "identical");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Put("same.dat", "identical");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(second->kept_version, IsEmpty());
  EXPECT_EQ(second->info.sha256, Sha256Hex("identical"));
  EXPECT_EQ(second->info.size, 9u);
  EXPECT_EQ(*storage().ReadAll("same.dat", 100), "identical");
  EXPECT_THAT(Keys(""), ElementsAre("same.dat"));
  EXPECT_THAT(backend_.temp_files(), IsEmpty());
}

TEST_P(StorageConformanceTest, DifferentContentKeepsPreviousVersion) {
  ASSERT_TRUE(Put("m/run.csv", "version 1").ok());
  auto second = Put("m/run.csv", "version 2");
  ASSERT_TRUE(second.ok()) << second.status();
  const std::string kept1 = second->kept_version;
  EXPECT_THAT(kept1, StartsWith(".datasync/versions/m/run.csv/"));
  const std::string name1 = kept1.substr(kept1.rfind('/') + 1);
  EXPECT_TRUE(std::regex_match(name1, std::regex(R"(\d{8}T\d{6}Z-[0-9a-f]{12}(-\d+)?)"))) << name1;
  EXPECT_THAT(name1, ::testing::HasSubstr(Sha256Hex("version 1").substr(0, 12)));

  EXPECT_EQ(*storage().ReadAll("m/run.csv", 100), "version 2");
  EXPECT_EQ(*storage().ReadAll(kept1, 100), "version 1");
  auto kept_info = storage().Stat(kept1);
  ASSERT_TRUE(kept_info.ok()) << kept_info.status();
  EXPECT_EQ(kept_info->size, 9u);

  // A third version keeps the second too, under a different name (same second is fine).
  auto third = Put("m/run.csv", "version 3");
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_NE(third->kept_version, kept1);
  EXPECT_EQ(*storage().ReadAll(third->kept_version, 100), "version 2");
  EXPECT_EQ(*storage().ReadAll(kept1, 100), "version 1");
  EXPECT_EQ(*storage().ReadAll("m/run.csv", 100), "version 3");

  EXPECT_THAT(Keys(""), ElementsAre("m/run.csv"));  // versions are never listed
  EXPECT_THAT(backend_.temp_files(), IsEmpty());
}

TEST_P(StorageConformanceTest, ExpectedShaMismatchAbortsAndLeavesNothing) {
  auto put = Put("x/mismatch.dat", "actual bytes",
                 PutOptions{.expected_sha256 = Sha256Hex("other bytes")});
  EXPECT_TRUE(absl::IsAborted(put.status())) << put.status();
  ExpectNothingUnder("x/mismatch.dat");
}

TEST_P(StorageConformanceTest, ExpectedShaMismatchLeavesExistingObjectAlone) {
  ASSERT_TRUE(Put("keep.dat", "original").ok());
  auto put = Put("keep.dat", "changed", PutOptions{.expected_sha256 = Sha256Hex("something else")});
  EXPECT_TRUE(absl::IsAborted(put.status())) << put.status();
  EXPECT_EQ(*storage().ReadAll("keep.dat", 100), "original");
  EXPECT_THAT(backend_.temp_files(), IsEmpty());
}

TEST_P(StorageConformanceTest, ExpectedShaIsCaseInsensitive) {
  std::string upper = Sha256Hex("abc");
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto put = Put("case.dat", "abc", PutOptions{.expected_sha256 = upper});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.sha256, Sha256Hex("abc"));
}

TEST_P(StorageConformanceTest, CancelledBeforeStartLeavesNothing) {
  std::atomic<bool> cancel{true};
  auto put = Put("c/cancelled.dat", "data", PutOptions{.cancel = &cancel});
  EXPECT_TRUE(absl::IsCancelled(put.status())) << put.status();
  ExpectNothingUnder("c/cancelled.dat");
}

TEST_P(StorageConformanceTest, CancelledDuringCopyLeavesNothing) {
  std::atomic<bool> cancel{false};
  const fs::path source = WriteSource(RandomContent(4 << 20, 3));
  absl::StatusOr<PutResult> put;
  std::thread t([&] {
    put = storage().PutFile("c/slow.dat", source,
                            PutOptions{.max_bytes_per_second = 1 << 20, .cancel = &cancel});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto cancelled_at = std::chrono::steady_clock::now();
  cancel = true;
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, std::chrono::seconds(1));
  EXPECT_TRUE(absl::IsCancelled(put.status())) << put.status();
  ExpectNothingUnder("c/slow.dat");
}

TEST_P(StorageConformanceTest, BandwidthLimitIsHonoured) {
  const std::string content = RandomContent(1 << 20, 4);
  const auto start = std::chrono::steady_clock::now();
  auto put = Put("paced.dat", content, PutOptions{.max_bytes_per_second = 4 << 20});
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_GE(took, std::chrono::milliseconds(200));  // 1 MiB at 4 MiB/s ≈ 250 ms
  EXPECT_TRUE(*storage().ReadAll("paced.dat", 2 << 20) == content);
}

TEST_P(StorageConformanceTest, InvalidKeysAreRejected) {
  const fs::path source = WriteSource("x");
  for (const char* key : {"../x", "/abs", "a//b", "a\\b", "", "a/./b", "a/", "a/../b", "C:/x"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(storage().PutFile(key, source, {}).status())) << key;
    EXPECT_TRUE(absl::IsInvalidArgument(storage().Stat(key).status())) << key;
    EXPECT_TRUE(absl::IsInvalidArgument(storage().ReadAll(key, 10).status())) << key;
  }
  EXPECT_THAT(Keys(""), IsEmpty());
}

TEST_P(StorageConformanceTest, ReservedKeysAreRejected) {
  const fs::path source = WriteSource("x");
  for (const char* key : {".datasync/x", ".datasync/versions/a/b",
                          "a/.dstmp-1234abcd-0123456789abcdef", ".dstmp-x"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(storage().PutFile(key, source, {}).status())) << key;
  }
  EXPECT_THAT(Keys(""), IsEmpty());
}

TEST_P(StorageConformanceTest, MissingObjectIsNotFound) {
  EXPECT_TRUE(absl::IsNotFound(storage().Stat("nope.dat").status()));
  EXPECT_TRUE(absl::IsNotFound(storage().Stat("no/such/dir/f.dat").status()));
  EXPECT_TRUE(absl::IsNotFound(storage().ReadAll("nope.dat", 10).status()));
  ASSERT_TRUE(Put("dir/f.dat", "x").ok());
  EXPECT_TRUE(absl::IsNotFound(storage().Stat("dir").status()));  // a prefix is not an object
  EXPECT_TRUE(absl::IsNotFound(storage().Stat("dir/f.dat/g").status()));
}

TEST_P(StorageConformanceTest, MissingSourceIsNotFound) {
  auto put = storage().PutFile("k.dat", scratch_ / "does-not-exist", {});
  EXPECT_TRUE(absl::IsNotFound(put.status())) << put.status();
  ExpectNothingUnder("k.dat");
}

TEST_P(StorageConformanceTest, ReadAllOverLimitIsResourceExhausted) {
  ASSERT_TRUE(Put("ten.dat", "0123456789").ok());
  EXPECT_TRUE(absl::IsResourceExhausted(storage().ReadAll("ten.dat", 9).status()));
  EXPECT_EQ(*storage().ReadAll("ten.dat", 10), "0123456789");
}

TEST_P(StorageConformanceTest, MtimeIsPreserved) {
  if (!backend_.client_loses_mtime.empty()) {
    GTEST_SKIP() << "the FUSE client loses mtimes: " << backend_.client_loses_mtime;
  }
  constexpr int64_t kMtime = 1'700'000'000'123'456'789;  // 2023-11-14, with nanoseconds
  auto put = Put("t/mtime.dat", "timed", PutOptions{.mtime_ns = kMtime});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.mtime_ns, kMtime);
  auto info = storage().Stat("t/mtime.dat");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->mtime_ns, kMtime);
  EXPECT_EQ(ListAll("t").at("t/mtime.dat").mtime_ns, kMtime);
}

TEST_P(StorageConformanceTest, WithoutVerify) {
  auto put = Put("nv.dat", "no verify", PutOptions{.verify = false});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(*storage().ReadAll("nv.dat", 100), "no verify");
}

// Group commit: staged puts land together, a differing object is kept as a version, identical
// content is left alone, and nothing stays behind in the temp area.
TEST_P(StorageConformanceTest, StagedPutsLandOnCommit) {
  ASSERT_TRUE(Put("g/replaced.dat", "old bytes").ok());
  ASSERT_TRUE(Put("g/same.dat", "same bytes").ok());
  std::vector<std::unique_ptr<StagedPut>> staged;
  const std::vector<std::pair<std::string, std::string>> puts = {
      {"g/new/a.dat", "alpha"}, {"g/replaced.dat", "new bytes"}, {"g/same.dat", "same bytes"},
      {"g/new/b.dat", ""}};
  for (const auto& [key, content] : puts) {
    auto s = storage().StagePut(key, WriteSource(content),
                                PutOptions{.expected_sha256 = Sha256Hex(content), .run_id = "5a9e1e57-run"});
    ASSERT_TRUE(s.ok()) << key << ": " << s.status();
    EXPECT_EQ((*s)->key(), key);
    EXPECT_EQ((*s)->bytes(), content.size());
    staged.push_back(std::move(*s));
  }
  auto results = storage().CommitPuts(std::move(staged));
  ASSERT_EQ(results.size(), puts.size());
  for (size_t i = 0; i < puts.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << puts[i].first << ": " << results[i].status();
    EXPECT_EQ(results[i]->info.key, puts[i].first);
    EXPECT_EQ(results[i]->info.sha256, Sha256Hex(puts[i].second));
    EXPECT_EQ(*storage().ReadAll(puts[i].first, 100), puts[i].second);
  }
  EXPECT_THAT(results[1]->kept_version, StartsWith(".datasync/versions/g/replaced.dat/"));
  EXPECT_EQ(*storage().ReadAll(results[1]->kept_version, 100), "old bytes");
  EXPECT_THAT(results[2]->kept_version, IsEmpty());
  EXPECT_THAT(Keys("g"), ElementsAre("g/new/a.dat", "g/new/b.dat", "g/replaced.dat", "g/same.dat"));
  EXPECT_THAT(backend_.temp_files(), IsEmpty());
}

TEST_P(StorageConformanceTest, StagedPutChecksTheExpectedHash) {
  auto s = storage().StagePut("g/bad.dat", WriteSource("actual"),
                              PutOptions{.expected_sha256 = Sha256Hex("other")});
  EXPECT_TRUE(absl::IsAborted(s.status())) << s.status();
  ExpectNothingUnder("g/bad.dat");
}

TEST_P(StorageConformanceTest, StagedPutWithVerifyLands) {
  auto s = storage().StagePut("g/v.dat", WriteSource("verified"), PutOptions{.verify = true});
  ASSERT_TRUE(s.ok()) << s.status();
  auto result = CommitOne(storage(), std::move(*s));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*storage().ReadAll("g/v.dat", 100), "verified");
}

TEST_P(StorageConformanceTest, ConcurrentPutsOfDifferentKeys) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 10;
  std::vector<fs::path> sources;
  sources.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) sources.push_back(WriteSource(absl::StrCat("content ", t)));
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Same directory for all threads, same run id: temp names must still not collide.
        const std::string key = absl::StrCat("shared/t", t, "-", i, ".dat");
        if (!storage().PutFile(key, sources[t], PutOptions{.run_id = "0badc0de-run"}).ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(ListAll("shared").size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_THAT(backend_.temp_files(), IsEmpty());
}

// Names the destination cannot hold are refused one by one as name refusals (the file is
// skipped, the storage is fine), before anything is written; the rest of a batch lands.
TEST_P(StorageConformanceTest, NamesTheDestinationCannotHoldAreRefusedOneByOne) {
  const StorageFeatures& f = storage().Features();
  std::vector<std::string> refused;
  if (f.max_name_bytes < kMaxComponentBytes) refused.push_back(std::string(f.max_name_bytes + 1, 'n') + "/x.dat");
  if (f.max_key_bytes < kMaxPathBytes) {
    std::string deep;
    while (deep.size() <= f.max_key_bytes) deep += std::string(std::min<size_t>(f.max_name_bytes, 200), 'd') + "/";
    refused.push_back(deep + "x.dat");
  }
  if (f.windows_names) {
    for (const char* k : {"w/aux.txt", "w/CON", "w/com1.log", "w/star*.dat", "w/q?.dat", "w/a:b.dat",
                          "w/lt<.dat", "w/pipe|.dat", "w/quote\".dat", "w/trailing.", "w/trailing ",
                          "w/dot./x.dat"}) {
      refused.push_back(k);
    }
  }
  std::vector<std::unique_ptr<StagedPut>> staged;
  for (const std::string& key : refused) {
    auto put = storage().PutFile(key, WriteSource("x"), {});
    EXPECT_TRUE(IsNameRefusal(put.status())) << key << ": " << put.status();
    EXPECT_TRUE(absl::IsInvalidArgument(put.status())) << key;
    auto stage = storage().StagePut(key, WriteSource("x"), {});
    EXPECT_TRUE(IsNameRefusal(stage.status())) << key << ": " << stage.status();
  }
  ASSERT_TRUE(Put("w/fine.dat", "fine").ok());
  EXPECT_THAT(Keys(""), ElementsAre("w/fine.dat"));
  EXPECT_THAT(backend_.temp_files(), IsEmpty());
}

// Two keys that fold to one name on a case-insensitive destination never write over each
// other: the second is refused as a name refusal, also when both are staged in one group.
// Elsewhere they are two objects.
TEST_P(StorageConformanceTest, CaseFoldedKeysNeverOverwriteEachOther) {
  const bool folds = storage().Features().case_insensitive;
  ASSERT_TRUE(Put("c/Case.txt", "upper case content").ok());
  auto second = Put("c/case.txt", "lower");
  auto staged_a = storage().StagePut("d/Name.dat", WriteSource("first"), {});
  ASSERT_TRUE(staged_a.ok()) << staged_a.status();
  auto staged_b = storage().StagePut("d/NAME.dat", WriteSource("second"), {});
  auto folder = Put("C/other.txt", "folder spelt differently");
  if (!folds) {
    EXPECT_TRUE(second.ok()) << second.status();
    ASSERT_TRUE(staged_b.ok()) << staged_b.status();
    EXPECT_TRUE(folder.ok()) << folder.status();
    return;
  }
  EXPECT_TRUE(IsNameRefusal(second.status())) << second.status();
  EXPECT_THAT(std::string(second.status().message()), ::testing::HasSubstr("Case.txt"));
  EXPECT_TRUE(IsNameRefusal(staged_b.status())) << staged_b.status();
  EXPECT_TRUE(IsNameRefusal(folder.status())) << folder.status();
  ASSERT_TRUE(CommitOne(storage(), std::move(*staged_a)).ok());
  EXPECT_EQ(*storage().ReadAll("c/Case.txt", 100), "upper case content");
  EXPECT_EQ(*storage().ReadAll("d/Name.dat", 100), "first");
  EXPECT_THAT(Keys(""), UnorderedElementsAre("c/Case.txt", "d/Name.dat"));
  // The same key again is an ordinary replacement.
  ASSERT_TRUE(Put("c/Case.txt", "upper case content, changed").ok());
  EXPECT_EQ(*storage().ReadAll("c/Case.txt", 100), "upper case content, changed");
}

// The source mtime and SHA-256 survive in storage whatever the destination keeps of mtimes
// (sidecar records where there are no xattrs), and the put reports the source mtime.
TEST_P(StorageConformanceTest, MetadataAndSourceMtimeSurviveOnEveryDestination) {
  constexpr int64_t kMtime = 1'600'000'000'987'654'321;
  const std::string content = "kept with its metadata";
  auto put = Put("m/a.dat", content, PutOptions{.mtime_ns = kMtime});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.mtime_ns, kMtime);
  const auto listed = ListAll("m");
  ASSERT_EQ(listed.count("m/a.dat"), 1u);
  EXPECT_TRUE(SameMtimeAt(storage().Features(), listed.at("m/a.dat").mtime_ns, kMtime));
  ExpectStoredSha(listed.at("m/a.dat").sha256, Sha256Hex(content));
  // Identical content again with another mtime: the object stays, its metadata follows.
  auto again = Put("m/a.dat", content, PutOptions{.mtime_ns = kMtime + 5'000'000'000});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->kept_version.empty());
  auto info = storage().Stat("m/a.dat");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(SameMtimeAt(storage().Features(), info->mtime_ns, kMtime + 5'000'000'000)) << info->mtime_ns;
  ExpectStoredSha(info->sha256, Sha256Hex(content));
}

// What a backend's URL advertises without opening it (AdvertisedFeatures) is what the opened
// backend says it does, and does: StagePutFd and GrantWrite work exactly where advertised.
TEST_P(StorageConformanceTest, FeaturesAgreeWithWhatItsUrlAdvertisesAndHold) {
  absl::StatusOr<StorageUrl> url = ParseStorageUrl(under_test().url);
  ASSERT_TRUE(url.ok()) << url.status();
  const StorageFeatures advertised = AdvertisedFeatures(*url);
  const StorageFeatures& f = storage().Features();
  EXPECT_EQ(f.direct_writes, advertised.direct_writes);
  EXPECT_EQ(f.write_grants, advertised.write_grants);
  EXPECT_EQ(f.stages_from_fd, advertised.stages_from_fd);
  EXPECT_EQ(f.atomic_replace, advertised.atomic_replace);
  EXPECT_TRUE(f.atomic_replace);  // every backend of ours replaces by rename / block list
  EXPECT_NE(f.direct_writes, f.write_grants);  // an agent writes it one way or the other

  const std::string content = "staged from an open file";
  const int fd = ::open(WriteSource(content).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto staged = storage().StagePutFd("f/fd.dat", fd, "source", PutOptions{}, StageFdOptions{});
  ::close(fd);
  if (f.stages_from_fd) {
    ASSERT_TRUE(staged.ok()) << staged.status();
    std::vector<std::unique_ptr<StagedPut>> one;
    one.push_back(std::move(*staged));
    auto results = storage().CommitPuts(std::move(one));
    ASSERT_TRUE(results.at(0).ok()) << results[0].status();
    EXPECT_EQ(*storage().ReadAll("f/fd.dat", 100), content);
  } else {
    EXPECT_TRUE(absl::IsUnimplemented(staged.status())) << staged.status();
  }

  auto grant = storage().GrantWrite("f/granted.dat", Sha256Hex(content), std::chrono::minutes(5));
  if (f.write_grants) {
    ASSERT_TRUE(grant.ok()) << grant.status();
    EXPECT_FALSE(grant->url.empty());
  } else {
    EXPECT_TRUE(absl::IsUnimplemented(grant.status())) << grant.status();
  }
}

TEST(AdvertisedFeaturesTest, KnowsEachSchemeWithoutOpeningIt) {
  // No such directory nor account: nothing is opened.
  auto dir = ParseStorageUrl("file:///nonexistent/ds-advertised");
  ASSERT_TRUE(dir.ok());
  const StorageFeatures d = AdvertisedFeatures(*dir);
  EXPECT_TRUE(d.direct_writes && d.stages_from_fd && d.atomic_replace);
  EXPECT_FALSE(d.write_grants);
  EXPECT_FALSE(fs::exists("/nonexistent/ds-advertised"));
  auto blob = ParseStorageUrl("azblob://nosuchaccount/container");
  ASSERT_TRUE(blob.ok());
  const StorageFeatures b = AdvertisedFeatures(*blob);
  EXPECT_TRUE(b.write_grants && b.atomic_replace);
  EXPECT_FALSE(b.direct_writes || b.stages_from_fd);
  const StorageFeatures unknown = AdvertisedFeatures(StorageUrl{.scheme = "s3"});
  EXPECT_FALSE(unknown.direct_writes || unknown.write_grants || unknown.stages_from_fd ||
               unknown.atomic_replace);
}

INSTANTIATE_TEST_SUITE_P(Backends, StorageConformanceTest,
                         ::testing::Values(DirFactory(), DirFactory(/*unnamed_files=*/false),
                                           AzBlobFactory(), ShareFactory(),
                                           ShareFactory(/*unnamed_files=*/false)),
                         [](const ::testing::TestParamInfo<StorageFactory>& info) {
                           return info.param.name;
                         });

// ---------------------------------------------------------------------------------------------
// Directory backend specifics.

class DirStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    scratch_ = MakeTempDir("ds-dir-storage-test");
    root_ = scratch_ / "share";
    auto opened = OpenDirStorage(root_.string());
    ASSERT_TRUE(opened.ok()) << opened.status();
    storage_ = std::move(*opened);
    xattrs_ = SupportsUserXattrs(root_);
  }
  void TearDown() override {
    storage_.reset();
    fs::remove_all(scratch_);
  }

  fs::path WriteSource(const std::string& content) {
    fs::path p = scratch_ / "sources" / absl::StrCat("source-", next_source_++, ".bin");
    WriteFile(p, content);
    return p;
  }

  std::vector<std::string> Temps(const std::string& prefix = "") {
    auto temps = ListTempFiles(root_.string(), prefix);
    EXPECT_TRUE(temps.ok()) << temps.status();
    return temps.ok() ? *temps : std::vector<std::string>{};
  }

  // Names in `dir` (any kind, hidden ones too), sorted.
  static std::vector<std::string> Entries(const fs::path& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  // Another storage on the same root, opened while the soft RLIMIT_NOFILE is `limit`: its
  // budget of unnamed files is a quarter of that. Null (test failed) if it cannot be opened.
  std::unique_ptr<Storage> OpenWithFileLimit(rlim_t limit) {
    struct rlimit saved {};
    EXPECT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
    struct rlimit low = saved;
    low.rlim_cur = limit;
    EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
    auto opened = OpenDirStorage(root_.string());
    EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
    EXPECT_TRUE(opened.ok()) << opened.status();
    return opened.ok() ? std::move(*opened) : nullptr;
  }

  std::vector<std::string> Keys(const std::string& prefix = "") {
    std::vector<std::string> keys;
    EXPECT_TRUE(storage_->List(prefix, [&](const ObjectInfo& i) { keys.push_back(i.key); }).ok());
    return keys;
  }

  fs::path scratch_;
  fs::path root_;
  std::unique_ptr<Storage> storage_;
  bool xattrs_ = false;  // the test filesystem keeps user xattrs
  std::atomic<int> next_source_{0};  // WriteSource runs on several threads in some tests
};

// The ordering group commit guarantees on a directory: a staged file is never under its key nor
// listed until CommitPuts, and a staged put that is dropped leaves nothing. On a local
// filesystem it is an unnamed O_TMPFILE file: no name at all.
// The probe at open leaves nothing behind: only the (empty) reserved area, with no probe folder,
// file or temp name in it, also when the storage is opened again.
TEST_F(DirStorageTest, OpeningLeavesNothingBehind) {
  EXPECT_THAT(Entries(root_), ElementsAre(".datasync"));
  EXPECT_THAT(Entries(root_ / ".datasync"), IsEmpty());
  ASSERT_TRUE(OpenDirStorage(root_.string()).ok());
  EXPECT_THAT(Entries(root_ / ".datasync"), IsEmpty());
  const StorageFeatures& f = storage_->Features();
  EXPECT_FALSE(f.case_insensitive);  // the test machines' local filesystems
  EXPECT_EQ(f.metadata_on_object, xattrs_);
  EXPECT_EQ(f.mtime_precision_ns, 1);
}

TEST_F(DirStorageTest, StagedPutIsInvisibleUntilCommitted) {
  auto a = storage_->StagePut("d/a.dat", WriteSource("staged a"), PutOptions{.run_id = "abcdef01-run"});
  auto b = storage_->StagePut("d/b.dat", WriteSource("staged b"), PutOptions{.run_id = "abcdef01-run"});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("d/a.dat").status()));
  EXPECT_THAT(Keys(), IsEmpty());
  EXPECT_THAT(Temps(), IsEmpty());
  EXPECT_THAT(Entries(root_ / "d"), IsEmpty());  // unnamed: nothing in the folder at all
  b->reset();
  auto result = CommitOne(*storage_, std::move(*a));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(Keys(), ElementsAre("d/a.dat"));
  EXPECT_EQ(*storage_->ReadAll("d/a.dat", 100), "staged a");
  EXPECT_THAT(Entries(root_ / "d"), ElementsAre("a.dat"));
}

// An object that appears under the name while an unnamed file waits for its commit: the link
// fails (EEXIST), the object is kept as a version and the staged file renamed over it.
TEST_F(DirStorageTest, ObjectAppearingBeforeTheCommitIsKept) {
  auto a = storage_->StagePut("d/a.dat", WriteSource("staged"), PutOptions{.run_id = "abcdef01-run"});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(storage_->PutFile("d/a.dat", WriteSource("meanwhile"), {}).ok());
  auto result = CommitOne(*storage_, std::move(*a));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*storage_->ReadAll("d/a.dat", 100), "staged");
  EXPECT_THAT(result->kept_version, StartsWith(".datasync/versions/d/a.dat/"));
  EXPECT_EQ(*storage_->ReadAll(result->kept_version, 100), "meanwhile");
  EXPECT_THAT(Temps(), IsEmpty());
  EXPECT_THAT(Entries(root_ / "d"), ElementsAre("a.dat"));
}

// Where O_TMPFILE is not used (refused by the filesystem, or beyond the descriptor budget) a
// staged file is a temp file that is never listed, and AbandonUpload finds it by run id.
TEST_F(DirStorageTest, StagedPutWithTempNamesIsInvisibleUntilCommitted) {
  auto opened = OpenDirStorage(root_.string(), DirStorageOptions{.unnamed_files = false});
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<Storage> named = std::move(*opened);
  auto a = named->StagePut("d/a.dat", WriteSource("staged a"), PutOptions{.run_id = "abcdef01-run"});
  auto b = named->StagePut("d/b.dat", WriteSource("staged b"), PutOptions{.run_id = "abcdef01-run"});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(absl::IsNotFound(named->Stat("d/a.dat").status()));
  EXPECT_THAT(Keys(), IsEmpty());
  EXPECT_EQ(Temps().size(), 2u);
  b->reset();  // dropped: its temp file goes
  EXPECT_EQ(Temps().size(), 1u);
  auto result = CommitOne(*named, std::move(*a));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(Keys(), ElementsAre("d/a.dat"));
  EXPECT_THAT(Temps(), IsEmpty());
  // A crash between staging and commit leaves a temp file that AbandonUpload finds by run id.
  auto c = named->StagePut("d/c.dat", WriteSource("staged c"), PutOptions{.run_id = "abcdef01-run"});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(Temps().size(), 1u);
  EXPECT_TRUE(named->AbandonUpload("d/c.dat", "abcdef01-run").ok());
  EXPECT_THAT(Temps(), IsEmpty());
}

// A process that dies between StagePut and CommitPuts (killed, crashed) leaves no new file
// behind: no object, no temp file, no entry of any kind in the destination folder. A put that
// was to replace an object stages under a temp name (it is renamed over the object at commit):
// the object stays intact and AbandonUpload removes the temp by run id.
TEST_F(DirStorageTest, CrashBeforeCommitLeavesNothing) {
  const fs::path source = WriteSource(std::string(300'000, 'c'));  // also starts write-back early
  ASSERT_TRUE(storage_->PutFile("d/keep.dat", WriteSource("kept"), {}).ok());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto s = storage_->StagePut("d/lost.dat", source, PutOptions{.run_id = "abcdef01-run"});
    auto r = storage_->StagePut("d/keep.dat", source, PutOptions{.run_id = "abcdef01-run"});
    ::_exit(s.ok() && r.ok() ? 0 : 1);  // dies holding both staged puts: no destructor runs
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_THAT(Keys(), ElementsAre("d/keep.dat"));
  EXPECT_EQ(*storage_->ReadAll("d/keep.dat", 100), "kept");
  EXPECT_EQ(Temps().size(), 1u);  // the replacement's; nothing of d/lost.dat
  EXPECT_TRUE(storage_->AbandonUpload("d/keep.dat", "abcdef01-run").ok());
  EXPECT_THAT(Temps(), IsEmpty());
  EXPECT_THAT(Entries(root_ / "d"), ElementsAre("keep.dat"));
}

// StagePutFd, as the agent copies files while it scans: from an open source (read from its
// first byte whatever its offset), hashed while copied, invisible until committed. With
// unnamed_only nothing is written when the key is taken (AlreadyExists) or the budget of
// unnamed files is used up (ResourceExhausted).
TEST_F(DirStorageTest, StagePutFdCopiesFromAnOpenSourceAndUnnamedOnlyRefusesCleanly) {
  const std::string content(200'000, 's');
  const int fd = ::open(WriteSource(content).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
    int get() const { return fd; }
  } src{fd};
  char first[10];
  ASSERT_EQ(::read(src.get(), first, sizeof first), 10);  // an offset that is not 0
  const PutOptions po{.run_id = "abcdef01-run"};
  const StageFdOptions unnamed{.unnamed_only = true};
  auto a = storage_->StagePutFd("d/a.dat", src.get(), "source a", po, unnamed);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->bytes(), content.size());
  EXPECT_EQ((*a)->sha256(), Sha256Hex(content));
  EXPECT_THAT(Entries(root_ / "d"), IsEmpty());
  auto result = CommitOne(*storage_, std::move(*a));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->info.sha256, Sha256Hex(content));
  EXPECT_EQ(*storage_->ReadAll("d/a.dat", 1 << 20), content);

  // The key is taken: refused before anything is written, the object untouched.
  auto again = storage_->StagePutFd("d/a.dat", src.get(), "source a", po, unnamed);
  EXPECT_TRUE(absl::IsAlreadyExists(again.status())) << again.status();
  EXPECT_THAT(Entries(root_ / "d"), ElementsAre("a.dat"));
  EXPECT_THAT(Temps(), IsEmpty());

  // No unnamed file left in the budget: refused; without unnamed_only a temp name is used.
  std::unique_ptr<Storage> small = OpenWithFileLimit(8);  // budget 2
  ASSERT_NE(small, nullptr);
  auto b = small->StagePutFd("d/b.dat", src.get(), "source b", po, unnamed);
  ASSERT_TRUE(b.ok()) << b.status();
  auto c = small->StagePutFd("d/c.dat", src.get(), "source c", po, unnamed);
  ASSERT_TRUE(c.ok()) << c.status();
  auto e = small->StagePutFd("d/e.dat", src.get(), "source e", po, unnamed);
  EXPECT_TRUE(absl::IsResourceExhausted(e.status())) << e.status();
  EXPECT_THAT(Temps(), IsEmpty());
  auto d = small->StagePutFd("d/d.dat", src.get(), "source d", po, StageFdOptions{});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(Temps().size(), 1u);
  EXPECT_THAT(Keys("d"), ElementsAre("d/a.dat"));
}

// An agent's changed file: staged unnamed over the object under its key (replace_unnamed), it
// leaves nothing named until commit, then replaces the object, which is kept as a version;
// identical content leaves the object as it was.
TEST_F(DirStorageTest, StagePutFdReplaceUnnamedReplacesAtCommitAndKeepsTheVersion) {
  ASSERT_TRUE(storage_->PutFile("d/r.dat", WriteSource("old bytes"), {}).ok());
  ASSERT_TRUE(storage_->PutFile("d/same.dat", WriteSource("same bytes"), {}).ok());
  const PutOptions po{.run_id = "abcdef01-run"};
  const StageFdOptions replace{.unnamed_only = true, .replace_unnamed = true};
  auto stage = [&](const std::string& key, const std::string& content) {
    const int fd = ::open(WriteSource(content).c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    auto s = storage_->StagePutFd(key, fd, "source", po, replace);
    ::close(fd);
    return s;
  };
  auto r = stage("d/r.dat", "new bytes");
  ASSERT_TRUE(r.ok()) << r.status();
  auto same = stage("d/same.dat", "same bytes");
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_THAT(Entries(root_ / "d"), ElementsAre("r.dat", "same.dat"));  // nothing named yet
  EXPECT_EQ(*storage_->ReadAll("d/r.dat", 100), "old bytes");
  std::vector<std::unique_ptr<StagedPut>> staged;
  staged.push_back(std::move(*r));
  staged.push_back(std::move(*same));
  auto results = storage_->CommitPuts(std::move(staged));
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  ASSERT_TRUE(results[1].ok()) << results[1].status();
  EXPECT_EQ(*storage_->ReadAll("d/r.dat", 100), "new bytes");
  EXPECT_THAT(results[0]->kept_version, StartsWith(".datasync/versions/d/r.dat/"));
  EXPECT_EQ(*storage_->ReadAll(results[0]->kept_version, 100), "old bytes");
  EXPECT_THAT(results[1]->kept_version, IsEmpty());
  EXPECT_EQ(*storage_->ReadAll("d/same.dat", 100), "same bytes");
  EXPECT_THAT(Temps(), IsEmpty());
  EXPECT_THAT(Keys("d"), ElementsAre("d/r.dat", "d/same.dat"));

  // The object it was to replace is removed before the commit: the copy lands all the same.
  ASSERT_TRUE(storage_->PutFile("d/gone.dat", WriteSource("old"), {}).ok());
  auto gone = stage("d/gone.dat", "newer");
  ASSERT_TRUE(gone.ok()) << gone.status();
  fs::remove(root_ / "d" / "gone.dat");
  auto landed = CommitOne(*storage_, std::move(*gone));
  ASSERT_TRUE(landed.ok()) << landed.status();
  EXPECT_THAT(landed->kept_version, IsEmpty());
  EXPECT_EQ(*storage_->ReadAll("d/gone.dat", 100), "newer");
  EXPECT_THAT(Temps(), IsEmpty());
}

// Unnamed files hold a descriptor each until commit: at most a quarter of RLIMIT_NOFILE. Beyond
// that, staging goes on under temp names; every put lands either way.
TEST_F(DirStorageTest, UnnamedFilesStayWithinTheDescriptorBudget) {
  std::unique_ptr<Storage> storage = OpenWithFileLimit(64);  // budget 16
  ASSERT_NE(storage, nullptr);
  std::vector<std::unique_ptr<StagedPut>> staged;
  for (int i = 0; i < 40; ++i) {
    auto s = storage->StagePut(absl::StrCat("b/f", i), WriteSource(absl::StrCat("content ", i)), {});
    ASSERT_TRUE(s.ok()) << s.status();
    staged.push_back(std::move(*s));
  }
  EXPECT_EQ(Temps().size(), 24u);  // 16 unnamed, the rest under temp names
  auto results = storage->CommitPuts(std::move(staged));
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    EXPECT_EQ(*storage->ReadAll(absl::StrCat("b/f", i), 100), absl::StrCat("content ", i));
  }
  EXPECT_THAT(Temps(), IsEmpty());
  EXPECT_EQ(Keys("b").size(), 40u);
}

TEST_F(DirStorageTest, OpenCreatesRootAndDescribesIt) {
  auto nested = OpenDirStorage((scratch_ / "x" / "y" / "z").string());
  ASSERT_TRUE(nested.ok()) << nested.status();
  EXPECT_TRUE(fs::is_directory(scratch_ / "x" / "y" / "z"));
  EXPECT_EQ((*nested)->Describe(), "file://" + (scratch_ / "x" / "y" / "z").string());
  EXPECT_EQ(storage_->Describe(), "file://" + root_.string());
  EXPECT_THAT(Temps(), IsEmpty());  // the write probe leaves nothing
}

TEST_F(DirStorageTest, OpenOnAFileFails) {
  WriteFile(scratch_ / "file", "x");
  auto opened = OpenDirStorage((scratch_ / "file").string());
  EXPECT_FALSE(opened.ok());
  EXPECT_TRUE(absl::IsNotFound(opened.status()) || absl::IsAlreadyExists(opened.status()))
      << opened.status();
}

TEST_F(DirStorageTest, OpenStorageUrlUsesDirBackend) {
  auto url = ParseStorageUrl("file://" + (scratch_ / "viaurl").string());
  ASSERT_TRUE(url.ok()) << url.status();
  auto opened = OpenStorage(*url);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ((*opened)->Describe(), "file://" + (scratch_ / "viaurl").string());
}

TEST_F(DirStorageTest, LayoutAndXattrsOnDisk) {
  constexpr int64_t kMtime = 1'600'000'000'000'000'001;
  auto put = storage_->PutFile("a/b.dat", WriteSource("hello"), PutOptions{.mtime_ns = kMtime});
  ASSERT_TRUE(put.ok()) << put.status();
  struct stat st;
  ASSERT_EQ(::lstat((root_ / "a" / "b.dat").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mtim.tv_sec, 1'600'000'000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 1);
  if (!xattrs_) GTEST_SKIP() << "no user xattrs on " << root_;
  // One compact xattr: version 1, SHA-256 (binary), mtime (int64 little-endian).
  char buf[100];
  ssize_t n = ::getxattr((root_ / "a" / "b.dat").c_str(), "user.datasync.meta", buf, sizeof buf);
  ASSERT_EQ(n, 41);
  EXPECT_EQ(buf[0], 1);
  EXPECT_EQ(HexEncode(std::string(buf + 1, 32)), Sha256Hex("hello"));
  uint64_t mtime = 0;
  for (int i = 0; i < 8; ++i) mtime |= static_cast<uint64_t>(static_cast<unsigned char>(buf[33 + i])) << (8 * i);
  EXPECT_EQ(mtime, static_cast<uint64_t>(kMtime));
  EXPECT_LT(::getxattr((root_ / "a" / "b.dat").c_str(), "user.datasync.sha256", buf, sizeof buf), 0);
  EXPECT_EQ(storage_->Stat("a/b.dat")->sha256, Sha256Hex("hello"));
}

// Objects written before the compact xattr carry two text xattrs: still trusted, and replaced by
// the compact one (the pair removed) when a put refreshes the object's metadata.
TEST_F(DirStorageTest, ObjectsWithTheOlderXattrsAreRead) {
  if (!xattrs_) GTEST_SKIP() << "no user xattrs on " << root_;
  const fs::path file = root_ / "old" / "o.dat";
  WriteFile(file, "older object");
  struct stat st;
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  const std::string mtime = absl::StrCat(static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec);
  const std::string sha = Sha256Hex("older object");
  ASSERT_EQ(::setxattr(file.c_str(), "user.datasync.mtime_ns", mtime.data(), mtime.size(), 0), 0);
  ASSERT_EQ(::setxattr(file.c_str(), "user.datasync.sha256", sha.data(), sha.size(), 0), 0);
  EXPECT_EQ(storage_->Stat("old/o.dat")->sha256, sha);
  // Same content, another mtime: left in place, metadata rewritten in the compact form.
  auto put = storage_->PutFile("old/o.dat", WriteSource("older object"), PutOptions{.mtime_ns = 1'000'000'007});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_THAT(put->kept_version, IsEmpty());
  char buf[100];
  EXPECT_EQ(::getxattr(file.c_str(), "user.datasync.meta", buf, sizeof buf), 41);
  EXPECT_LT(::getxattr(file.c_str(), "user.datasync.sha256", buf, sizeof buf), 0);
  EXPECT_LT(::getxattr(file.c_str(), "user.datasync.mtime_ns", buf, sizeof buf), 0);
  auto info = storage_->Stat("old/o.dat");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->sha256, sha);
  EXPECT_EQ(info->mtime_ns, 1'000'000'007);
}

TEST_F(DirStorageTest, InPlaceEditMakesStoredHashStale) {
  if (!xattrs_) GTEST_SKIP() << "no user xattrs on " << root_;
  ASSERT_TRUE(
      storage_->PutFile("e.dat", WriteSource("before"), PutOptions{.mtime_ns = 1'000'000'000})
          .ok());
  ASSERT_EQ(storage_->Stat("e.dat")->sha256, Sha256Hex("before"));
  WriteFile(root_ / "e.dat", "after!");  // another tool edits it: new mtime, xattrs kept
  auto info = storage_->Stat("e.dat");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_THAT(info->sha256, IsEmpty());  // unknown rather than wrong
  // A put of the edited content is recognised as identical after hashing.
  auto put = storage_->PutFile("e.dat", WriteSource("after!"), {});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_THAT(put->kept_version, IsEmpty());
  EXPECT_EQ(storage_->Stat("e.dat")->sha256, Sha256Hex("after!"));
}

TEST_F(DirStorageTest, IdenticalPutRefreshesMtime) {
  ASSERT_TRUE(
      storage_->PutFile("m.dat", WriteSource("same"), PutOptions{.mtime_ns = 1'000'000'000}).ok());
  auto second =
      storage_->PutFile("m.dat", WriteSource("same"), PutOptions{.mtime_ns = 2'000'000'000});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(second->kept_version, IsEmpty());
  EXPECT_EQ(second->info.mtime_ns, 2'000'000'000);
  EXPECT_EQ(storage_->Stat("m.dat")->mtime_ns, 2'000'000'000);
  if (xattrs_) {
    EXPECT_EQ(storage_->Stat("m.dat")->sha256, Sha256Hex("same"));
  }
}

TEST_F(DirStorageTest, ZeroMtimeMeansSourceMtime) {
  const fs::path source = WriteSource("src");
  struct timespec times[2] = {{0, UTIME_OMIT}, {1'234'567'890, 42}};
  ASSERT_EQ(::utimensat(AT_FDCWD, source.c_str(), times, 0), 0);
  auto put = storage_->PutFile("z.dat", source, {});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.mtime_ns, 1'234'567'890'000'000'042);
}

TEST_F(DirStorageTest, ListTempFilesReportsLeftovers) {
  ASSERT_TRUE(storage_->PutFile("a/ok.dat", WriteSource("ok"), {}).ok());
  WriteFile(root_ / "a" / ".dstmp-0123abcd-0123456789abcdef", "partial");
  WriteFile(root_ / ".datasync" / "versions" / "a" / "b.dat" / ".dstmp-deadbeef-0123456789abcdef",
            "p");
  WriteFile(root_ / "c" / "d" / ".dstmp-cafecafe-0123456789abcdef", "p");
  WriteFile(root_ / "c" / "d" / ".dstmpnot-a-temp", "p");

  EXPECT_THAT(Temps(),
              UnorderedElementsAre("a/.dstmp-0123abcd-0123456789abcdef",
                                   ".datasync/versions/a/b.dat/.dstmp-deadbeef-0123456789abcdef",
                                   "c/d/.dstmp-cafecafe-0123456789abcdef"));
  EXPECT_THAT(Temps("a"),
              UnorderedElementsAre("a/.dstmp-0123abcd-0123456789abcdef",
                                   ".datasync/versions/a/b.dat/.dstmp-deadbeef-0123456789abcdef"));
  EXPECT_THAT(Temps("c"), ElementsAre("c/d/.dstmp-cafecafe-0123456789abcdef"));
  EXPECT_THAT(Temps("missing"), IsEmpty());
  EXPECT_TRUE(absl::IsInvalidArgument(ListTempFiles(root_.string(), "../a").status()));
  EXPECT_THAT(Keys(), UnorderedElementsAre("a/ok.dat", "c/d/.dstmpnot-a-temp"));
}

TEST_F(DirStorageTest, NamesThatAreNotValidKeysAreNotListed) {
  ASSERT_TRUE(storage_->PutFile("ok/fine.dat", WriteSource("x"), {}).ok());
  WriteFile(root_ / "ok" / "back\\slash.dat", "x");  // made by another tool
  WriteFile(root_ / "ok" / "bad\xff-utf8.dat", "x");
  WriteFile(root_ / "ok" / "ctl\x01" / "inside.dat", "x");
  EXPECT_THAT(Keys(), ElementsAre("ok/fine.dat"));
}

TEST_F(DirStorageTest, CrashLeftoverTempIsNeverAnObjectAndDoesNotBlockPuts) {
  // A crash mid-copy leaves exactly the temp name this run would use for data/x.dat.
  const std::string run_id = "1a2b3c4d-5e6f-4a5b-8c9d-0e1f2a3b4c5d";
  const std::string temp = absl::StrCat(".dstmp-1a2b3c4d-", Sha256Hex("x.dat").substr(0, 16));
  WriteFile(root_ / "data" / temp, "half a fi");
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("data/x.dat").status()));
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("data/" + temp).status()));
  EXPECT_THAT(Keys(), IsEmpty());
  EXPECT_THAT(Temps(), ElementsAre("data/" + temp));

  // The retry of the same run still lands; the leftover stays for reconcile to report.
  auto put =
      storage_->PutFile("data/x.dat", WriteSource("half a file"), PutOptions{.run_id = run_id});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(*storage_->ReadAll("data/x.dat", 100), "half a file");
  EXPECT_THAT(Keys(), ElementsAre("data/x.dat"));
  EXPECT_THAT(Temps(), ElementsAre("data/" + temp));
}

TEST_F(DirStorageTest, InFlightPutIsInvisibleUntilRenamed) {
  ASSERT_TRUE(storage_->PutFile("r/obj.bin", WriteSource("old content"), {}).ok());
  const std::string content = RandomContent(1 << 20, 5);
  const fs::path source = WriteSource(content);
  absl::StatusOr<PutResult> put;
  std::thread t([&] {
    put = storage_->PutFile("r/obj.bin", source,
                            PutOptions{.run_id = "feedface-0000", .max_bytes_per_second = 2 << 20});
  });
  ASSERT_TRUE(WaitFor([&] { return !Temps().empty(); }));
  const std::vector<std::string> temps = Temps();
  ASSERT_EQ(temps.size(), 1u);
  EXPECT_EQ(temps[0], absl::StrCat("r/.dstmp-feedface-", Sha256Hex("obj.bin").substr(0, 16)));
  // Mid-copy: readers see the old object, whole, and nothing else.
  EXPECT_EQ(*storage_->ReadAll("r/obj.bin", 2 << 20), "old content");
  EXPECT_THAT(Keys(), ElementsAre("r/obj.bin"));
  t.join();
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_TRUE(*storage_->ReadAll("r/obj.bin", 2 << 20) == content);
  EXPECT_EQ(*storage_->ReadAll(put->kept_version, 100), "old content");
  EXPECT_THAT(Temps(), IsEmpty());
}

TEST_F(DirStorageTest, LongNamesFitTempNames) {
  const std::string name(255, 'n');  // NAME_MAX: "name.tmp" style temps would overflow
  auto put = storage_->PutFile("long/" + name, WriteSource("x"), {});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(*storage_->ReadAll("long/" + name, 10), "x");
  ASSERT_TRUE(storage_->PutFile("long/" + name, WriteSource("y"), {}).ok());  // version path too
}

TEST_F(DirStorageTest, SourceChangedDuringCopyAborts) {
  const fs::path source = WriteSource(RandomContent(1 << 20, 6));
  absl::StatusOr<PutResult> put;
  std::thread t([&] {
    put = storage_->PutFile("s/growing.dat", source, PutOptions{.max_bytes_per_second = 2 << 20});
  });
  ASSERT_TRUE(WaitFor([&] { return !Temps().empty(); }));
  {
    std::ofstream out(source, std::ios::binary | std::ios::app);
    out << "appended while copying";
  }
  t.join();
  EXPECT_TRUE(absl::IsAborted(put.status())) << put.status();
  EXPECT_THAT(std::string(put.status().message()),
              ::testing::HasSubstr("source changed while copying"));
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("s/growing.dat").status()));
  EXPECT_THAT(Temps(), IsEmpty());
}

TEST_F(DirStorageTest, SymlinksAreNeitherFollowedNorWrittenThrough) {
  const fs::path outside = scratch_ / "outside";
  WriteFile(outside / "secret.dat", "secret");
  fs::create_directory_symlink(outside, root_ / "link");
  fs::create_symlink(outside / "secret.dat", root_ / "file-link.dat");

  EXPECT_THAT(Keys(), IsEmpty());
  EXPECT_THAT(Keys("link"), IsEmpty());
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("link/secret.dat").status()));
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("file-link.dat").status()));
  EXPECT_TRUE(absl::IsNotFound(storage_->ReadAll("file-link.dat", 100).status()));
  auto put = storage_->PutFile("link/new.dat", WriteSource("x"), {});
  EXPECT_TRUE(absl::IsFailedPrecondition(put.status())) << put.status();
  EXPECT_FALSE(fs::exists(outside / "new.dat"));
  put = storage_->PutFile("file-link.dat", WriteSource("x"), {});
  EXPECT_TRUE(absl::IsFailedPrecondition(put.status())) << put.status();
  EXPECT_EQ(*ReadFileToString(outside / "secret.dat"), "secret");
}

TEST_F(DirStorageTest, KeyBlockedByFileOrDirectoryIsFailedPrecondition) {
  ASSERT_TRUE(storage_->PutFile("a", WriteSource("file"), {}).ok());
  auto put = storage_->PutFile("a/b", WriteSource("x"), {});
  EXPECT_TRUE(absl::IsFailedPrecondition(put.status())) << put.status();
  ASSERT_TRUE(storage_->PutFile("d/x", WriteSource("x"), {}).ok());
  put = storage_->PutFile("d", WriteSource("x"), {});
  EXPECT_TRUE(absl::IsFailedPrecondition(put.status())) << put.status();
  EXPECT_THAT(Temps(), IsEmpty());
}

TEST_F(DirStorageTest, VanishedRootIsUnavailable) {
  fs::remove_all(root_);
  EXPECT_TRUE(absl::IsUnavailable(storage_->Stat("a").status()));
  EXPECT_TRUE(absl::IsUnavailable(storage_->List("", [](const ObjectInfo&) {})));
  EXPECT_TRUE(absl::IsUnavailable(storage_->PutFile("a", WriteSource("x"), {}).status()));
}

TEST_F(DirStorageTest, ListOf20000FilesIsFast) {
  constexpr int kDirs = 100;
  constexpr int kPerDir = 200;
  const std::string sha = Sha256Hex("x");
  for (int d = 0; d < kDirs; ++d) {
    const fs::path dir = root_ / "job" / absl::StrCat("2026-", d / 10) / absl::StrCat("run-", d);
    fs::create_directories(dir);
    for (int f = 0; f < kPerDir; ++f) {
      const std::string path = (dir / absl::StrCat("sample-", f, ".dat")).string();
      int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(::write(fd, "x", 1), 1);
      struct stat st;
      ASSERT_EQ(::fstat(fd, &st), 0);
      const std::string mtime = absl::StrCat(
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec);
      ::fsetxattr(fd, "user.datasync.mtime_ns", mtime.data(), mtime.size(), 0);
      ::fsetxattr(fd, "user.datasync.sha256", sha.data(), sha.size(), 0);
      ::close(fd);
    }
  }
  size_t count = 0;
  size_t with_sha = 0;
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = storage_->List("", [&](const ObjectInfo& info) {
    ++count;
    if (info.sha256 == sha) ++with_sha;
  });
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(count, static_cast<size_t>(kDirs * kPerDir));
  std::cout << "List() of " << count << " files (" << with_sha << " with stored SHA-256): " << ms
            << " ms\n";
  RecordProperty("list_20000_ms", static_cast<int>(ms));
  EXPECT_LT(ms, 1000);
}

// ---------------------------------------------------------------------------------------------
// Azure Blob backend specifics (against the shared Azurite).

TEST(AzBlobUrlTest, ParsesAccountContainerAndEndpoint) {
  auto url = ParseStorageUrl("azblob://labdata/measurements");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->scheme, "azblob");
  EXPECT_EQ(url->account, "labdata");
  EXPECT_EQ(url->container, "measurements");
  EXPECT_EQ(url->endpoint, "https://labdata.blob.core.windows.net");
  EXPECT_EQ(url->text, "azblob://labdata/measurements");

  url = ParseStorageUrl(
      "azblob://devstoreaccount1/"
      "c-1?endpoint=http%3A%2F%2F127.0.0.1%3A10000%2Fdevstoreaccount1%2F");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->endpoint, "http://127.0.0.1:10000/devstoreaccount1");
  EXPECT_EQ(url->text,
            "azblob://devstoreaccount1/c-1?endpoint=http://127.0.0.1:10000/devstoreaccount1");
  url = ParseStorageUrl("azblob://devstoreaccount1/c-1?endpoint=http://127.0.0.1:10000/x");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->endpoint, "http://127.0.0.1:10000/x");
}

TEST(AzBlobUrlTest, RejectsBadNamesAndSecretsInTheUrl) {
  for (const char* bad :
       {"azblob://", "azblob://acc", "azblob://Acc/cont", "azblob://acc/Cont", "azblob://acc/c",
        "azblob://acc/con--t", "azblob://acc/cont/extra", "azblob://a_c/cont",
        "azblob://acc/cont?endpoint=ftp://x", "azblob://acc/cont?endpoint=http://h/p?q=1"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ParseStorageUrl(bad).status())) << bad;
  }
  auto url = ParseStorageUrl("azblob://acc/cont?sig=SECRETSIG&key=SECRETKEY");
  EXPECT_TRUE(absl::IsInvalidArgument(url.status())) << url.status();
  EXPECT_THAT(std::string(url.status().message()), ::testing::Not(::testing::HasSubstr("SECRET")));
}

TEST(AzBlobUrlTest, OpenStorageWithoutAccountKeyIsFailedPrecondition) {
  auto url = ParseStorageUrl("azblob://labdata/measurements");
  ASSERT_TRUE(url.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(OpenStorage(*url).status()));
}

TEST(AzBlobSasTest, MakeBlobSasFieldsAndArgumentChecks) {
  auto sas =
      MakeBlobSas("acct", Azurite::kKey, "cont", "a/b c.dat", "cw", 1'700'000'000, 1'700'000'600);
  ASSERT_TRUE(sas.ok()) << sas.status();
  EXPECT_THAT(*sas, ::testing::HasSubstr("sv=2021-08-06"));
  EXPECT_THAT(*sas, ::testing::HasSubstr("st=2023-11-14T22%3A13%3A20Z"));
  EXPECT_THAT(*sas, ::testing::HasSubstr("se=2023-11-14T22%3A23%3A20Z"));
  EXPECT_THAT(*sas, ::testing::HasSubstr("sr=b"));
  EXPECT_THAT(*sas, ::testing::HasSubstr("sp=cw"));
  EXPECT_THAT(*sas, ::testing::HasSubstr("spr=https&"));
  EXPECT_THAT(*sas, ::testing::HasSubstr("sig="));
  auto http = MakeBlobSas("acct", Azurite::kKey, "cont", "x", "r", 0, 1'700'000'600, true);
  ASSERT_TRUE(http.ok());
  EXPECT_THAT(*http, ::testing::HasSubstr("spr=https%2Chttp"));
  EXPECT_THAT(*http, ::testing::Not(::testing::HasSubstr("st=")));
  EXPECT_TRUE(
      absl::IsInvalidArgument(MakeBlobSas("a", Azurite::kKey, "c", "b", "wc", 0, 10).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(MakeBlobSas("a", Azurite::kKey, "c", "b", "cwx", 0, 10).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(MakeBlobSas("a", Azurite::kKey, "c", "b", "", 0, 10).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(MakeBlobSas("a", Azurite::kKey, "c", "b", "cw", 20, 10).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(MakeBlobSas("a", "not base64!", "c", "b", "cw", 0, 10).status()));
}

TEST(StorageGrantTest, DirBackendHandsOutNoWriteGrants) {
  const fs::path root = MakeTempDir("ds-grant-test");
  auto dir = OpenDirStorage(root.string());
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_TRUE(absl::IsUnimplemented(
      (*dir)->GrantWrite("a.dat", Sha256Hex("x"), std::chrono::seconds(60)).status()));
  fs::remove_all(root);
}

class AzBlobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Azurite& azurite = Azurite::Get();
    ASSERT_TRUE(azurite.error().empty()) << azurite.error();
    auto options = azurite.NewContainer();
    ASSERT_TRUE(options.ok()) << options.status();
    options_ = *options;
    auto opened = OpenAzBlobStorage(options_);
    ASSERT_TRUE(opened.ok()) << opened.status();
    storage_ = std::move(*opened);
    scratch_ = MakeTempDir("ds-azblob-test");
  }
  void TearDown() override {
    storage_.reset();
    if (!scratch_.empty()) fs::remove_all(scratch_);
  }

  fs::path WriteSource(const std::string& content) {
    fs::path p = scratch_ / absl::StrCat("source-", next_source_++, ".bin");
    WriteFile(p, content);
    return p;
  }

  // URL of blob `key` with a SAS for blob `signed_for` (default: the same blob).
  std::string SasUrl(const std::string& key, const std::string& permissions, int64_t expiry_unix_s,
                     const std::string& signed_for = "") {
    auto sas = MakeBlobSas(Azurite::kAccount, Azurite::kKey, options_.container,
                           signed_for.empty() ? key : signed_for, permissions, NowSeconds() - 300,
                           expiry_unix_s, /*allow_http=*/true);
    EXPECT_TRUE(sas.ok()) << sas.status();
    return absl::StrCat(options_.endpoint, "/", options_.container, "/", azblob::EncodePath(key),
                        "?", sas.value_or(""));
  }

  static int64_t NowSeconds() { return SystemClock()->NowUnixMs() / 1000; }

  // http://127.0.0.1:PORT (the endpoint without the account path).
  std::string Origin() const { return options_.endpoint.substr(0, options_.endpoint.rfind('/')); }

  // Sleeps until just after the next whole second and returns it (Unix seconds): a SAS expiring
  // one second later is valid for ~0.97 s from now (SAS times have whole seconds).
  static int64_t AlignToNextSecond() {
    const int64_t now_ms = SystemClock()->NowUnixMs();
    std::this_thread::sleep_for(std::chrono::milliseconds(1000 - now_ms % 1000 + 30));
    return NowSeconds();
  }

  std::vector<std::string> Keys(const std::string& prefix = "") {
    std::vector<std::string> keys;
    absl::Status s = storage_->List(prefix, [&](const ObjectInfo& i) { keys.push_back(i.key); });
    EXPECT_TRUE(s.ok()) << s;
    return keys;
  }

  AzBlobOptions options_;
  std::unique_ptr<Storage> storage_;
  fs::path scratch_;
  std::atomic<int> next_source_{0};  // WriteSource runs on several threads in some tests
};

TEST_F(AzBlobTest, OpenStorageFromUrlAndCredentials) {
  auto url = ParseStorageUrl(absl::StrCat("azblob://", Azurite::kAccount, "/", options_.container,
                                          "?endpoint=", options_.endpoint));
  ASSERT_TRUE(url.ok()) << url.status();
  auto opened = OpenStorage(*url, StorageCredentials{Azurite::kKey});
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ((*opened)->Describe(), url->text);
  ASSERT_TRUE((*opened)->PutFile("via-url.dat", WriteSource("u"), {}).ok());
  EXPECT_EQ(*storage_->ReadAll("via-url.dat", 10), "u");
}

TEST_F(AzBlobTest, MissingContainerIsNotFoundAtOpen) {
  AzBlobOptions o = options_;
  o.container = "no-such-container";
  EXPECT_TRUE(absl::IsNotFound(OpenAzBlobStorage(o).status()));
}

TEST_F(AzBlobTest, BadAccountKeyIsRefusedAndNeverEchoed) {
  AzBlobOptions o = options_;
  o.account_key = Base64Encode(std::string(64, 'k'));  // well-formed, wrong
  auto opened = OpenAzBlobStorage(o);
  EXPECT_TRUE(absl::IsPermissionDenied(opened.status())) << opened.status();
  EXPECT_THAT(std::string(opened.status().message()),
              ::testing::Not(::testing::HasSubstr(o.account_key)));
  o.account_key = "not base64 at all!";
  opened = OpenAzBlobStorage(o);
  EXPECT_TRUE(absl::IsInvalidArgument(opened.status())) << opened.status();
  EXPECT_THAT(std::string(opened.status().message()),
              ::testing::Not(::testing::HasSubstr("at all")));
}

TEST_F(AzBlobTest, UnreachableServiceIsUnavailable) {
  AzBlobOptions o = options_;
  o.endpoint = absl::StrCat("http://127.0.0.1:1/", Azurite::kAccount);
  EXPECT_TRUE(absl::IsUnavailable(OpenAzBlobStorage(o).status()));
}

TEST_F(AzBlobTest, ListFollowsNextMarkerAcrossManyPages) {
  AzBlobOptions o = options_;
  o.list_page_size = 4;
  auto paged = OpenAzBlobStorage(o);
  ASSERT_TRUE(paged.ok()) << paged.status();
  std::set<std::string> want;
  for (int i = 0; i < 23; ++i) {
    const std::string key = absl::StrCat("p/", i, ".dat");
    ASSERT_TRUE(PutAzBlobRaw(options_, key, "x").ok());
    want.insert(key);
  }
  ASSERT_TRUE(
      PutAzBlobRaw(options_, ".datasync/versions/p/0.dat/20260101T000000Z-0123456789ab", "old")
          .ok());
  ASSERT_TRUE(PutAzBlobRaw(options_, "p/.dstmp-0123abcd-0123456789abcdef", "t").ok());
  ASSERT_TRUE(PutAzBlobRaw(options_, "q/not-under-p.dat", "x").ok());
  std::set<std::string> got;
  int calls = 0;
  ASSERT_TRUE((*paged)
                  ->List("p",
                         [&](const ObjectInfo& info) {
                           ++calls;
                           got.insert(info.key);
                           EXPECT_EQ(info.size, 1u);
                           EXPECT_THAT(info.sha256, IsEmpty());  // planted without metadata
                           EXPECT_GT(info.mtime_ns, 0);          // Last-Modified instead
                         })
                  .ok());
  EXPECT_EQ(calls, 23);
  EXPECT_EQ(got, want);
  size_t all = 0;
  ASSERT_TRUE((*paged)->List("", [&](const ObjectInfo&) { ++all; }).ok());
  EXPECT_EQ(all, 24u);
  auto temps = (*paged)->ListTempObjects("p");
  ASSERT_TRUE(temps.ok()) << temps.status();
  ASSERT_EQ(temps->size(), 1u);
  EXPECT_EQ(temps->front().key, "p/.dstmp-0123abcd-0123456789abcdef");
  EXPECT_TRUE((*paged)->RemoveTempObject("p/.dstmp-0123abcd-0123456789abcdef").ok());
  EXPECT_TRUE(absl::IsInvalidArgument((*paged)->RemoveTempObject("p/0.dat")));
  EXPECT_THAT(*(*paged)->ListTempObjects(""), IsEmpty());
}

TEST_F(AzBlobTest, ForeignBlobWithoutMetadataIsHashedNotBlindlyReplaced) {
  ASSERT_TRUE(PutAzBlobRaw(options_, "f/foreign.dat", "abc").ok());
  EXPECT_THAT(storage_->Stat("f/foreign.dat")->sha256, IsEmpty());
  auto digest = storage_->HashObject("f/foreign.dat");
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(digest->sha256, Sha256Hex("abc"));
  EXPECT_EQ(digest->size, 3u);
  // Same bytes: recognised after hashing, no version; our metadata is added.
  auto same = storage_->PutFile("f/foreign.dat", WriteSource("abc"), PutOptions{.mtime_ns = 5});
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_THAT(same->kept_version, IsEmpty());
  auto info = storage_->Stat("f/foreign.dat");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->sha256, Sha256Hex("abc"));
  EXPECT_EQ(info->mtime_ns, 5);
  // Different bytes: the old ones are kept, named by their hash.
  auto other = storage_->PutFile("f/foreign.dat", WriteSource("abcd"), {});
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_THAT(other->kept_version, ::testing::HasSubstr(Sha256Hex("abc").substr(0, 12)));
  EXPECT_EQ(*storage_->ReadAll(other->kept_version, 10), "abc");
}

TEST_F(AzBlobTest, InFlightMultiBlockPutIsInvisibleUntilCommitted) {
  AzBlobOptions o = options_;
  o.block_size = 256 << 10;
  auto small_blocks = OpenAzBlobStorage(o);
  ASSERT_TRUE(small_blocks.ok()) << small_blocks.status();
  ASSERT_TRUE(storage_->PutFile("r/obj.bin", WriteSource("old content"), {}).ok());
  const std::string content = RandomContent(1 << 20, 7);
  const fs::path source = WriteSource(content);
  absl::StatusOr<PutResult> put;
  RateLimiter limiter(2 << 20);  // blocks go in parallel; the whole file takes ~0.5 s
  std::thread t([&] {
    put = (*small_blocks)
              ->PutFile("r/obj.bin", source,
                        PutOptions{.rate_limiter = &limiter, .block_parallelism = 4});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(250));  // about two blocks staged
  EXPECT_EQ(*storage_->ReadAll("r/obj.bin", 2 << 20), "old content");
  EXPECT_THAT(Keys(), ElementsAre("r/obj.bin"));
  t.join();
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_TRUE(*storage_->ReadAll("r/obj.bin", 2 << 20) == content);
  EXPECT_EQ(*storage_->ReadAll(put->kept_version, 100), "old content");
}

TEST_F(AzBlobTest, SasUploadLandsWithMetadata) {
  const std::string content = RandomContent(3 << 20, 8);  // 3 blocks of 1 MiB
  SasPutStats stats;
  auto put = PutFileWithSas(
      SasUrl("agent/run 1/ü.dat", "cw", NowSeconds() + 600), WriteSource(content),
      PutOptions{.expected_sha256 = Sha256Hex(content), .mtime_ns = 77}, 1 << 20, nullptr, &stats);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->info.key, "agent/run 1/ü.dat");
  EXPECT_EQ(put->info.sha256, Sha256Hex(content));
  EXPECT_THAT(put->kept_version, IsEmpty());
  EXPECT_EQ(stats.blocks_total, 3);
  EXPECT_EQ(stats.blocks_uploaded, 3);
  auto info = storage_->Stat("agent/run 1/ü.dat");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, content.size());
  EXPECT_EQ(info->sha256, Sha256Hex(content));
  EXPECT_EQ(info->mtime_ns, 77);
  EXPECT_TRUE(*storage_->ReadAll("agent/run 1/ü.dat", 4 << 20) == content);

  // A small file goes in one Put Blob.
  put = PutFileWithSas(SasUrl("agent/small.txt", "cw", NowSeconds() + 600), WriteSource("small"),
                       {}, 1 << 20, nullptr, &stats);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(stats.blocks_total, 0);
  EXPECT_EQ(storage_->Stat("agent/small.txt")->sha256, Sha256Hex("small"));
}

TEST_F(AzBlobTest, SasForOneBlobIsRefusedForAnother) {
  const std::string url = SasUrl("b.dat", "cw", NowSeconds() + 600, /*signed_for=*/"a.dat");
  auto put = PutFileWithSas(url, WriteSource("x"), {});
  EXPECT_TRUE(absl::IsPermissionDenied(put.status())) << put.status();
  EXPECT_THAT(std::string(put.status().message()), ::testing::HasSubstr("HTTP 403"));
  EXPECT_THAT(std::string(put.status().message()), ::testing::Not(::testing::HasSubstr("sig=")));
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("b.dat").status()));
  // Multi-block: refused at the first block, nothing committed either.
  put = PutFileWithSas(url, WriteSource(RandomContent(300'000, 9)), {}, 100'000);
  EXPECT_TRUE(absl::IsPermissionDenied(put.status())) << put.status();
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("b.dat").status()));
  // A read-only SAS for the right blob cannot write.
  put = PutFileWithSas(SasUrl("b.dat", "r", NowSeconds() + 600), WriteSource("x"), {});
  EXPECT_TRUE(absl::IsPermissionDenied(put.status())) << put.status();
  EXPECT_THAT(Keys(), IsEmpty());
}

TEST_F(AzBlobTest, ExpiredSasIsRefused) {
  const std::string url = SasUrl("late.dat", "cw", NowSeconds() - 60);
  int renewals = 0;
  auto put = PutFileWithSas(url, WriteSource("late"), {}, 8 << 20, nullptr);
  EXPECT_TRUE(absl::IsPermissionDenied(put.status())) << put.status();
  // A renewal that keeps handing out expired SAS does not loop forever.
  put = PutFileWithSas(url, WriteSource("late"), {}, 8 << 20, [&]() -> absl::StatusOr<std::string> {
    ++renewals;
    return url;
  });
  EXPECT_TRUE(absl::IsPermissionDenied(put.status())) << put.status();
  EXPECT_EQ(renewals, 2);
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("late.dat").status()));
}

TEST_F(AzBlobTest, ExpectedShaMismatchWithSasCommitsNothing) {
  auto put = PutFileWithSas(SasUrl("m.dat", "cw", NowSeconds() + 600),
                            WriteSource(RandomContent(250'000, 10)),
                            PutOptions{.expected_sha256 = Sha256Hex("other")}, 100'000);
  EXPECT_TRUE(absl::IsAborted(put.status())) << put.status();
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("m.dat").status()));
}

// The SAS expires after a few blocks; renew_sas() hands out a fresh one and the upload goes on
// from the block that was refused: every block is staged exactly once.
TEST_F(AzBlobTest, SasExpiringMidUploadIsRenewedAndOnlyUnstagedBlocksAreSent) {
  constexpr size_t kBlock = 256 << 10;
  const std::string content = RandomContent(8 * kBlock, 11);  // 8 blocks, ~2 s at 1 MiB/s
  const fs::path source = WriteSource(content);
  const int64_t second = AlignToNextSecond();
  const std::string short_lived = SasUrl("renew/data.bin", "cw", second + 1);
  const auto start = std::chrono::steady_clock::now();
  int renew_calls = 0;
  std::chrono::steady_clock::duration renewed_after{};
  SasPutStats stats;
  auto put = PutFileWithSas(
      short_lived, source,
      PutOptions{.expected_sha256 = Sha256Hex(content),
                 .max_bytes_per_second = 1 << 20,
                 .block_parallelism = 1},
      kBlock,
      [&]() -> absl::StatusOr<std::string> {
        ++renew_calls;
        renewed_after = std::chrono::steady_clock::now() - start;
        return SasUrl("renew/data.bin", "cw", NowSeconds() + 600);
      },
      &stats);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(renew_calls, 1);
  EXPECT_EQ(stats.sas_renewals, 1);
  EXPECT_GT(renewed_after, std::chrono::milliseconds(500));  // mid-upload, not at the start
  EXPECT_EQ(stats.blocks_total, 8);
  EXPECT_EQ(stats.blocks_uploaded, 8);  // none sent twice
  EXPECT_EQ(stats.blocks_already_staged, 0);
  EXPECT_TRUE(*storage_->ReadAll("renew/data.bin", 4 << 20) == content);
  EXPECT_EQ(storage_->Stat("renew/data.bin")->sha256, Sha256Hex(content));
}

// Blocks of one file go out in parallel, all paced by one limiter shared with other uploads
// (the agent-wide --bwlimit): the blob is byte-identical, blocks overlapped, and every byte was
// paid for at the shared cap.
TEST_F(AzBlobTest, ParallelBlocksUnderASharedCapLandByteIdentical) {
  constexpr size_t kBlock = 128 << 10;
  const std::string content = RandomContent(16 * kBlock + 1234, 13);  // 17 blocks
  const std::string other = RandomContent(5 * kBlock, 14);
  RateLimiter limiter(8 << 20);
  SasPutStats stats, other_stats;
  absl::StatusOr<PutResult> put, other_put;
  std::thread concurrent([&] {
    other_put = PutFileWithSas(SasUrl("par/other.bin", "cw", NowSeconds() + 600),
                               WriteSource(other),
                               PutOptions{.rate_limiter = &limiter, .block_parallelism = 2},
                               kBlock, nullptr, &other_stats);
  });
  put = PutFileWithSas(
      SasUrl("par/data.bin", "cw", NowSeconds() + 600), WriteSource(content),
      PutOptions{.expected_sha256 = Sha256Hex(content), .rate_limiter = &limiter,
                 .block_parallelism = 4},
      kBlock, nullptr, &stats);
  concurrent.join();
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_TRUE(other_put.ok()) << other_put.status();
  EXPECT_EQ(stats.blocks_total, 17);
  EXPECT_EQ(stats.blocks_uploaded, 17);
  EXPECT_GT(stats.max_blocks_in_flight, 1);
  EXPECT_LE(stats.max_blocks_in_flight, 4);
  EXPECT_LE(other_stats.max_blocks_in_flight, 2);
  EXPECT_EQ(limiter.reserved_bytes(), content.size() + other.size());
  EXPECT_TRUE(*storage_->ReadAll("par/data.bin", 4 << 20) == content);
  EXPECT_TRUE(*storage_->ReadAll("par/other.bin", 4 << 20) == other);
  EXPECT_EQ(storage_->Stat("par/data.bin")->sha256, Sha256Hex(content));
}

// The SAS expires while four blocks are in flight: they are all refused, ONE renewal serves
// them, and each block is staged once.
TEST_F(AzBlobTest, ParallelBlocksShareOneSasRenewal) {
  constexpr size_t kBlock = 128 << 10;
  const std::string content = RandomContent(16 * kBlock, 15);  // 2 MiB: ~2 s at 1 MiB/s
  const int64_t second = AlignToNextSecond();
  RateLimiter limiter(1 << 20);
  std::atomic<int> renew_calls{0};
  SasPutStats stats;
  auto put = PutFileWithSas(
      SasUrl("par/renew.bin", "cw", second + 1), WriteSource(content),
      PutOptions{.expected_sha256 = Sha256Hex(content), .rate_limiter = &limiter,
                 .block_parallelism = 4},
      kBlock,
      [&]() -> absl::StatusOr<std::string> {
        ++renew_calls;
        return SasUrl("par/renew.bin", "cw", NowSeconds() + 600);
      },
      &stats);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(renew_calls.load(), 1);
  EXPECT_EQ(stats.sas_renewals, 1);
  EXPECT_EQ(stats.blocks_uploaded, 16);
  EXPECT_TRUE(*storage_->ReadAll("par/renew.bin", 4 << 20) == content);
}

// A failing block stops the file: later blocks are not sent, nothing is committed.
TEST_F(AzBlobTest, AFailedBlockStopsTheFileAndCommitsNothing) {
  constexpr size_t kBlock = 128 << 10;
  const std::string content = RandomContent(16 * kBlock, 16);
  RateLimiter limiter(2 << 20);
  SasPutStats stats;
  // Signed for another blob: every block is refused (403) and there is no renewal.
  auto put = PutFileWithSas(SasUrl("par/refused.bin", "cw", NowSeconds() + 600, "par/x.bin"),
                            WriteSource(content),
                            PutOptions{.rate_limiter = &limiter, .block_parallelism = 4}, kBlock,
                            nullptr, &stats);
  EXPECT_TRUE(absl::IsPermissionDenied(put.status())) << put.status();
  EXPECT_EQ(stats.blocks_uploaded, 0);
  EXPECT_LT(stats.blocks_total, 16);  // stopped reading after the first refusal
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("par/refused.bin").status()));
}

// What an agent journals about staged blocks, kept in memory for the tests.
struct RecordingMemory {
  std::mutex mu;
  std::set<std::string> ids;
  int forgotten = 0;
  StagedBlockMemory Memory() {
    return StagedBlockMemory{
        .recall = [this] {
          std::lock_guard<std::mutex> lock(mu);
          return ids;
        },
        .remember = [this](const std::string& id) {
          std::lock_guard<std::mutex> lock(mu);
          ids.insert(id);
        },
        .forget = [this] {
          std::lock_guard<std::mutex> lock(mu);
          ids.clear();
          ++forgotten;
        }};
  }
};

// An agent restarted mid-file holds only a write-only SAS (cannot list staged blocks): what it
// remembered staging is skipped, the rest is sent, and the commit succeeds.
TEST_F(AzBlobTest, WriteOnlySasResumesFromRememberedBlocks) {
  constexpr size_t kBlock = 256 << 10;
  const std::string content = RandomContent(8 * kBlock, 17);
  const fs::path source = WriteSource(content);
  RecordingMemory journal;
  const StagedBlockMemory memory = journal.Memory();
  const int64_t second = AlignToNextSecond();
  SasPutStats first_stats;
  auto first = PutFileWithSas(
      SasUrl("resume/wo.bin", "cw", second + 1), source,
      PutOptions{.expected_sha256 = Sha256Hex(content), .max_bytes_per_second = 1 << 20,
                 .block_parallelism = 1},
      kBlock, []() -> absl::StatusOr<std::string> { return absl::UnavailableError("server down"); },
      &first_stats, &memory);
  ASSERT_TRUE(absl::IsUnavailable(first.status())) << first.status();
  ASSERT_GT(first_stats.blocks_uploaded, 0);
  ASSERT_LT(first_stats.blocks_uploaded, 8);
  EXPECT_EQ(journal.ids.size(), static_cast<size_t>(first_stats.blocks_uploaded));
  EXPECT_EQ(journal.forgotten, 0);

  SasPutStats stats;
  auto second_put = PutFileWithSas(SasUrl("resume/wo.bin", "cw", NowSeconds() + 600), source,
                                   PutOptions{.expected_sha256 = Sha256Hex(content)}, kBlock,
                                   nullptr, &stats, &memory);
  ASSERT_TRUE(second_put.ok()) << second_put.status();
  EXPECT_EQ(stats.blocks_already_staged, first_stats.blocks_uploaded);
  EXPECT_EQ(stats.blocks_uploaded, 8 - first_stats.blocks_uploaded);
  EXPECT_EQ(journal.forgotten, 1);  // committed: nothing left to remember
  EXPECT_TRUE(journal.ids.empty());
  EXPECT_TRUE(*storage_->ReadAll("resume/wo.bin", 4 << 20) == content);
}

// Remembered blocks the service does not hold (here: staged for another blob) make the commit
// fail; the upload forgets them and sends the whole file once more.
TEST_F(AzBlobTest, StaleRememberedBlocksFallBackToAFullUpload) {
  constexpr size_t kBlock = 128 << 10;
  const std::string content = RandomContent(6 * kBlock, 18);
  const fs::path source = WriteSource(content);
  RecordingMemory journal;
  StagedBlockMemory remember_only = journal.Memory();
  remember_only.forget = nullptr;  // keep the ids after this commit
  ASSERT_TRUE(PutFileWithSas(SasUrl("stale/a.bin", "cw", NowSeconds() + 600), source, {}, kBlock,
                             nullptr, nullptr, &remember_only)
                  .ok());
  ASSERT_EQ(journal.ids.size(), 6u);
  const StagedBlockMemory memory = journal.Memory();
  SasPutStats stats;
  auto put = PutFileWithSas(SasUrl("stale/b.bin", "cw", NowSeconds() + 600), source,
                            PutOptions{.expected_sha256 = Sha256Hex(content)}, kBlock, nullptr,
                            &stats, &memory);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(stats.blocks_uploaded, 6);
  EXPECT_GE(journal.forgotten, 1);
  EXPECT_TRUE(*storage_->ReadAll("stale/b.bin", 4 << 20) == content);
  EXPECT_EQ(storage_->Stat("stale/b.bin")->sha256, Sha256Hex(content));
}

// The agent could not renew (server down): the upload stops with staged blocks. A later call
// with a SAS that may read (rcw) finds them with Get Block List and sends only the rest.
TEST_F(AzBlobTest, LaterSasUploadResumesBlocksStagedByAnEarlierOne) {
  constexpr size_t kBlock = 256 << 10;
  const std::string content = RandomContent(8 * kBlock, 12);
  const fs::path source = WriteSource(content);
  const int64_t second = AlignToNextSecond();
  SasPutStats first_stats;
  auto first = PutFileWithSas(
      SasUrl("resume/data.bin", "rcw", second + 1), source,
      PutOptions{.max_bytes_per_second = 1 << 20, .block_parallelism = 1}, kBlock,
      []() -> absl::StatusOr<std::string> {
        return absl::UnavailableError("server not reachable");
      },
      &first_stats);
  EXPECT_TRUE(absl::IsUnavailable(first.status())) << first.status();
  EXPECT_THAT(std::string(first.status().message()), ::testing::HasSubstr("renewing the SAS"));
  ASSERT_GT(first_stats.blocks_uploaded, 0);
  ASSERT_LT(first_stats.blocks_uploaded, 8);
  EXPECT_TRUE(absl::IsNotFound(storage_->Stat("resume/data.bin").status()));

  SasPutStats stats;
  auto second_put =
      PutFileWithSas(SasUrl("resume/data.bin", "rcw", NowSeconds() + 600), source,
                     PutOptions{.expected_sha256 = Sha256Hex(content)}, kBlock, nullptr, &stats);
  ASSERT_TRUE(second_put.ok()) << second_put.status();
  EXPECT_EQ(stats.blocks_total, 8);
  EXPECT_EQ(stats.blocks_already_staged, first_stats.blocks_uploaded);
  EXPECT_EQ(stats.blocks_uploaded, 8 - first_stats.blocks_uploaded);
  EXPECT_TRUE(*storage_->ReadAll("resume/data.bin", 4 << 20) == content);
}

// Every block carries Content-MD5 of the bytes we hashed: the service refuses bytes that were
// corrupted on the way, and that surfaces as DataLoss.
TEST_F(AzBlobTest, ServiceRejectsABlockWhoseBytesDoNotMatchTheirMd5) {
  auto transport =
      azblob::MakeSharedKeyTransport(Origin(), Azurite::kAccount, *Base64Decode(Azurite::kKey), {});
  const std::string body = "the bytes that arrived";
  azblob::BlobRequest req;
  req.method = "PUT";
  req.path = absl::StrCat("/", Azurite::kAccount, "/", options_.container, "/md5.dat");
  req.query = {{"comp", "block"}, {"blockid", Base64Encode("000000")}};
  req.headers = {{"Content-MD5", Md5Base64("the bytes that were sent")}};
  req.body = body.data();
  req.body_size = body.size();
  req.what = "PUT BLOCK md5.dat";
  auto r = transport->Send(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 400);
  EXPECT_TRUE(absl::IsDataLoss(azblob::ErrorFromResponse(*r, req.what)))
      << azblob::ErrorFromResponse(*r, req.what);
  req.headers = {{"Content-MD5", Md5Base64(body)}};
  r = transport->Send(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 201);
}

TEST_F(AzBlobTest, VanishedContainerIsUnavailable) {
  ASSERT_TRUE(storage_->PutFile("a.dat", WriteSource("a"), {}).ok());
  auto transport =
      azblob::MakeSharedKeyTransport(Origin(), Azurite::kAccount, *Base64Decode(Azurite::kKey), {});
  azblob::BlobRequest req;
  req.method = "DELETE";
  req.path = absl::StrCat("/", Azurite::kAccount, "/", options_.container);
  req.query = {{"restype", "container"}};
  auto r = transport->Send(req);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->status, 202) << r->body;
  EXPECT_TRUE(absl::IsUnavailable(storage_->Stat("a.dat").status()))
      << storage_->Stat("a.dat").status();
  EXPECT_TRUE(absl::IsUnavailable(storage_->List("", [](const ObjectInfo&) {})));
  EXPECT_TRUE(absl::IsUnavailable(storage_->ReadAll("a.dat", 10).status()));
  EXPECT_TRUE(absl::IsUnavailable(storage_->PutFile("b.dat", WriteSource("b"), {}).status()));
}

// v1 → v2 → v1 → v2 within one second keeps v1 twice under the same <UTC>-<sha12>: the second
// copy must not overwrite the first (Copy Blob with If-None-Match: *) but take a -N suffix.
TEST_F(AzBlobTest, VersionNameCollisionGetsASuffix) {
  std::vector<std::string> kept;
  for (const char* content : {"v1", "v2", "v1", "v2"}) {
    auto put = storage_->PutFile("c/x.dat", WriteSource(content), {});
    ASSERT_TRUE(put.ok()) << put.status();
    if (!put->kept_version.empty()) kept.push_back(put->kept_version);
  }
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(*storage_->ReadAll(kept[0], 10), "v1");
  EXPECT_EQ(*storage_->ReadAll(kept[1], 10), "v2");
  EXPECT_EQ(*storage_->ReadAll(kept[2], 10), "v1");
  EXPECT_NE(kept[2], kept[0]);
  EXPECT_EQ(std::set<std::string>(kept.begin(), kept.end()).size(), 3u);
  EXPECT_EQ(*storage_->ReadAll("c/x.dat", 10), "v2");
}

TEST_F(AzBlobTest, GrantWriteKeepsTheOldVersionForTheAgent) {
  ASSERT_TRUE(storage_->PutFile("g/run.csv", WriteSource("version 1"), {}).ok());
  auto grant = storage_->GrantWrite("g/run.csv", Sha256Hex("version 2"), std::chrono::seconds(60));
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_FALSE(grant->already_present);
  EXPECT_THAT(grant->kept_version, StartsWith(".datasync/versions/g/run.csv/"));
  EXPECT_EQ(*storage_->ReadAll(grant->kept_version, 100), "version 1");
  EXPECT_GT(grant->expires_unix_ms, SystemClock()->NowUnixMs());
  EXPECT_THAT(grant->url, ::testing::HasSubstr("sp=cw"));
  // Asking again (the agent's first try failed) reuses the kept version.
  auto again = storage_->GrantWrite("g/run.csv", Sha256Hex("version 2"), std::chrono::seconds(60));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->kept_version, grant->kept_version);

  auto put = PutFileWithSas(again->url, WriteSource("version 2"), {});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(*storage_->ReadAll("g/run.csv", 100), "version 2");
  EXPECT_THAT(Keys(), ElementsAre("g/run.csv"));

  auto present =
      storage_->GrantWrite("g/run.csv", Sha256Hex("version 2"), std::chrono::seconds(60));
  ASSERT_TRUE(present.ok()) << present.status();
  EXPECT_TRUE(present->already_present);
  EXPECT_THAT(present->kept_version, IsEmpty());
  auto fresh = storage_->GrantWrite("g/new.csv", Sha256Hex("n"), std::chrono::seconds(60));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_THAT(fresh->kept_version, IsEmpty());
  EXPECT_TRUE(absl::IsInvalidArgument(
      storage_->GrantWrite(".datasync/x", Sha256Hex("n"), std::chrono::seconds(60)).status()));
}

}  // namespace
}  // namespace ds

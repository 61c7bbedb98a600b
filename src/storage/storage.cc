#include "storage/storage.h"

#include <locale.h>
#include <wctype.h>

#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/paths.h"
#include "storage/azblob/azblob_storage.h"
#include "storage/dir/dir_storage.h"

namespace ds {

namespace {

// Decodes %XX escapes (for the endpoint query value). InvalidArgument on a bad escape.
absl::StatusOr<std::string> PercentDecodeUrlValue(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    int value = 0;
    if (i + 2 >= in.size() || !absl::ascii_isxdigit(in[i + 1]) ||
        !absl::ascii_isxdigit(in[i + 2])) {
      return absl::InvalidArgumentError("bad %-escape in storage URL");
    }
    for (int k = 1; k <= 2; ++k) {
      const char c = absl::ascii_tolower(in[i + k]);
      value = value * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
    }
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

// Azure naming rules: account 3-24 lowercase letters and digits; container 3-63 lowercase
// letters, digits and single inner hyphens.
bool IsValidAccountName(std::string_view s) {
  if (s.size() < 3 || s.size() > 24) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'z')) return false;
  }
  return true;
}

bool IsValidContainerName(std::string_view s) {
  if (s.size() < 3 || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '-') {
      if (s[i - 1] == '-') return false;
    } else if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'z')) {
      return false;
    }
  }
  return true;
}

// An http(s)://host[:port][/path] URL without query, fragment or user info; trailing '/' removed.
absl::StatusOr<std::string> NormaliseEndpoint(std::string endpoint) {
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  size_t scheme_end = endpoint.find("://");
  const std::string scheme =
      scheme_end == std::string::npos ? "" : absl::AsciiStrToLower(endpoint.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https") {
    return absl::InvalidArgumentError(
        absl::StrCat("storage endpoint '", endpoint, "' must start with http:// or https://"));
  }
  const std::string rest = endpoint.substr(scheme_end + 3);
  const std::string host = rest.substr(0, rest.find('/'));
  if (host.empty() || rest.find_first_of("?#@ ") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "storage endpoint '", endpoint, "' must be http(s)://HOST[:PORT][/PATH] (no query)"));
  }
  return absl::StrCat(scheme, "://", rest);
}

// azblob://ACCOUNT/CONTAINER[?endpoint=URL]
absl::StatusOr<StorageUrl> ParseAzBlobUrl(std::string_view text) {
  constexpr std::string_view kScheme = "azblob://";
  const std::string shown(text.substr(0, text.find('?')));  // never echo the query back
  std::string_view rest = text.substr(kScheme.size());
  std::string_view query;
  if (size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  const size_t slash = rest.find('/');
  StorageUrl url;
  url.scheme = "azblob";
  if (slash != std::string_view::npos) {
    url.account = std::string(rest.substr(0, slash));
    url.container = std::string(rest.substr(slash + 1));
  }
  while (!url.container.empty() && url.container.back() == '/') url.container.pop_back();
  if (!IsValidAccountName(url.account) || !IsValidContainerName(url.container)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "storage URL '", shown,
        "' must be azblob://ACCOUNT/CONTAINER (account: 3-24 lowercase letters and digits; "
        "container: 3-63 lowercase letters, digits and single hyphens)"));
  }
  for (absl::string_view param :
       absl::StrSplit(absl::string_view(query.data(), query.size()), '&', absl::SkipEmpty())) {
    const size_t eq = param.find('=');
    const std::string name(param.substr(0, eq));
    if (name != "endpoint" || eq == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("storage URL '", shown, "': unknown query parameter '", name,
                       "' (only endpoint=URL is allowed; account keys never go in the URL)"));
    }
    DS_ASSIGN_OR_RETURN(std::string endpoint,
                        PercentDecodeUrlValue(std::string(param.substr(eq + 1))));
    DS_ASSIGN_OR_RETURN(url.endpoint, NormaliseEndpoint(std::move(endpoint)));
  }
  const std::string default_endpoint =
      absl::StrCat("https://", url.account, ".blob.core.windows.net");
  url.text = absl::StrCat("azblob://", url.account, "/", url.container);
  if (url.endpoint.empty()) {
    url.endpoint = default_endpoint;
  } else if (url.endpoint != default_endpoint) {
    absl::StrAppend(&url.text, "?endpoint=", url.endpoint);
  }
  return url;
}

}  // namespace

absl::StatusOr<StorageUrl> ParseStorageUrl(std::string_view text) {
  StorageUrl url;
  url.text = std::string(text);
  if (text.empty()) return absl::InvalidArgumentError("storage URL is empty");
  if (text.rfind("azblob://", 0) == 0) return ParseAzBlobUrl(text);
  if (text.rfind("file://", 0) == 0) {
    std::string_view p = text.substr(7);
    if (p.empty() || p.front() != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("storage URL '", std::string(text), "' must be file:///ABSOLUTE/PATH"));
    }
    url.scheme = "file";
    url.path = std::filesystem::path(p).lexically_normal().string();
  } else if (text.find("://") != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported storage URL scheme in '",
                                                   std::string(text.substr(0, text.find('?'))),
                                                   "' (supported: file://, azblob://)"));
  } else {
    url.scheme = "file";
    url.path = std::filesystem::absolute(std::filesystem::path(text)).lexically_normal().string();
  }
  while (url.path.size() > 1 && url.path.back() == '/') url.path.pop_back();
  url.text = absl::StrCat("file://", url.path);
  return url;
}

absl::Status ValidateWritableKey(const std::string& key) {
  DS_RETURN_IF_ERROR(ValidateRelativePath(key));
  const size_t first_slash = key.find('/');
  if (std::string_view(key).substr(0, first_slash) == kReservedArea) {
    return absl::InvalidArgumentError(
        absl::StrCat("key '", key, "' is inside the reserved area ", std::string(kReservedArea)));
  }
  const size_t last_slash = key.rfind('/');
  const std::string_view name =
      std::string_view(key).substr(last_slash == std::string::npos ? 0 : last_slash + 1);
  if (IsTempName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key '", key, "' has a name reserved for temp files (", std::string(kTempPrefix), "*)"));
  }
  return absl::OkStatus();
}

namespace {
// StagePut's default: the put already happened; CommitPuts hands back its result.
class DoneStagedPut final : public StagedPut {
 public:
  DoneStagedPut(std::string key, PutResult result) : key_(std::move(key)), result_(std::move(result)) {}
  const std::string& key() const override { return key_; }
  uint64_t bytes() const override { return result_.info.size; }
  PutResult& result() { return result_; }

 private:
  std::string key_;
  PutResult result_;
};
}  // namespace

absl::StatusOr<std::unique_ptr<StagedPut>> Storage::StagePut(const std::string& key,
                                                             const std::filesystem::path& source,
                                                             const PutOptions& options) {
  DS_ASSIGN_OR_RETURN(PutResult r, PutFile(key, source, options));
  return std::make_unique<DoneStagedPut>(key, std::move(r));
}

absl::StatusOr<platform::File> OpenPutSourceFile(const std::filesystem::path& source,
                                                 const PutOptions& options) {
  if (options.source_file == nullptr) {
    platform::OpenOptions read;
    read.follow_links = true;
    return platform::File::Open(source, read);
  }
  DS_ASSIGN_OR_RETURN(platform::File file, options.source_file->Duplicate());
  DS_RETURN_IF_ERROR(file.Seek(0));
  return file;
}

absl::StatusOr<std::unique_ptr<StagedPut>> Storage::StagePutFd(const std::string& key,
                                                               const platform::File&,
                                                               const std::string&,
                                                               const PutOptions&,
                                                               const StageFdOptions&) {
  return absl::UnimplementedError(
      absl::StrCat(Describe(), " does not stage ", key, " from an open file"));
}

namespace {

constexpr char kNameRefusalPayload[] = "type.datasync/name-refusal";

// Debian's abseil has its own string_view, which std::string_view does not convert to.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Decodes one UTF-8 sequence at `s[i]`; returns the code point and advances `i`, or -1 (and
// advances by one byte) for a malformed sequence.
int32_t NextCodePoint(std::string_view s, size_t& i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (len == 0 || i + len > s.size()) {
    ++i;
    return -1;
  }
  int32_t cp = len == 1 ? c : c & (0x7f >> len);
  for (int k = 1; k < len; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) {
      ++i;
      return -1;
    }
    cp = (cp << 6) | (b(i + k) & 0x3f);
  }
  i += static_cast<size_t>(len);
  return cp;
}

void AppendUtf8(int32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// Simple (one to one) Unicode upper-case mapping, from the C library's C.UTF-8 tables; ASCII
// only where that locale is missing.
int32_t UpperCodePoint(int32_t cp) {
  if (cp < 0x80) return absl::ascii_toupper(static_cast<unsigned char>(cp));
  static const locale_t utf8 = ::newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t{});
  if (utf8 == locale_t{}) return cp;
  return static_cast<int32_t>(::towupper_l(static_cast<wint_t>(cp), utf8));
}

// Device names Windows reserves in every folder, with or without an extension.
bool IsReservedDeviceName(std::string_view component) {
  std::string_view stem = component.substr(0, component.find('.'));
  while (!stem.empty() && stem.back() == ' ') stem.remove_suffix(1);
  static constexpr std::array<std::string_view, 4> kPlain = {"CON", "PRN", "AUX", "NUL"};
  for (std::string_view r : kPlain) {
    if (absl::EqualsIgnoreCase(Av(stem), Av(r))) return true;
  }
  if (stem.size() == 4 && absl::ascii_isdigit(stem[3]) && stem[3] != '0') {
    const std::string_view head = stem.substr(0, 3);
    return absl::EqualsIgnoreCase(Av(head), "COM") || absl::EqualsIgnoreCase(Av(head), "LPT");
  }
  return false;
}

// Why a Windows or SMB destination cannot hold `component`; empty when it can.
std::string WindowsNameProblem(std::string_view component) {
  for (char c : component) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20) return "contains a control character";
    if (std::string_view("\\:*?\"<>|").find(c) != std::string_view::npos) {
      return absl::StrCat("contains '", std::string(1, c),
                          "', which Windows and SMB shares cannot hold");
    }
  }
  if (component.back() == '.' || component.back() == ' ') {
    return "ends with a dot or a space, which Windows and SMB shares drop";
  }
  if (IsReservedDeviceName(component)) return "is a reserved device name on Windows and SMB shares";
  return "";
}

}  // namespace

std::string FoldedKey(const StorageFeatures& features, std::string_view key) {
  if (!features.case_insensitive) return std::string(key);
  std::string out;
  out.reserve(key.size());
  for (size_t i = 0; i < key.size();) {
    const size_t start = i;
    const int32_t cp = NextCodePoint(key, i);
    if (cp < 0) {
      out.append(key.substr(start, i - start));  // not UTF-8: kept as it is
    } else {
      AppendUtf8(UpperCodePoint(cp), out);
    }
  }
  return out;
}

absl::Status NameRefusal(absl::Status status) {
  status.SetPayload(kNameRefusalPayload, absl::Cord("1"));
  return status;
}

bool IsNameRefusal(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kNameRefusalPayload).has_value();
}

absl::Status CheckKeyHoldable(const StorageFeatures& features, std::string_view key) {
  auto refuse = [&](std::string_view why) {
    return NameRefusal(absl::InvalidArgumentError(
        absl::StrCat("name '", Av(key), "' cannot be stored here: ", Av(why))));
  };
  if (key.size() > features.max_key_bytes) {
    return refuse(absl::StrCat("the path has ", key.size(), " bytes, the destination holds at most ",
                               features.max_key_bytes));
  }
  for (absl::string_view component : absl::StrSplit(Av(key), '/')) {
    if (component.size() > features.max_name_bytes) {
      return refuse(absl::StrCat("a name has ", component.size(),
                                 " bytes, the destination holds at most ", features.max_name_bytes));
    }
    if (!features.windows_names || component.empty()) continue;
    if (std::string why = WindowsNameProblem({component.data(), component.size()}); !why.empty()) {
      return refuse(absl::StrCat("'", component, "' ", why));
    }
  }
  return absl::OkStatus();
}

bool SameMtimeAt(const StorageFeatures& features, int64_t a_ns, int64_t b_ns) {
  const int64_t p = features.mtime_precision_ns;
  if (p <= 0) return true;
  if (p == 1) return a_ns == b_ns;
  const auto floor_div = [p](int64_t v) { return v >= 0 ? v / p : -((-v + p - 1) / p); };
  // Shares round or truncate: equal when within one unit of the precision.
  const int64_t d = floor_div(a_ns) - floor_div(b_ns);
  return d >= -1 && d <= 1 && (a_ns > b_ns ? a_ns - b_ns : b_ns - a_ns) < p;
}

std::vector<absl::StatusOr<PutResult>> Storage::CommitPuts(std::vector<std::unique_ptr<StagedPut>> staged) {
  std::vector<absl::StatusOr<PutResult>> out;
  out.reserve(staged.size());
  for (auto& s : staged) {
    auto* done = dynamic_cast<DoneStagedPut*>(s.get());
    if (done == nullptr) {
      out.push_back(absl::InternalError(absl::StrCat("staged put of ", s->key(), " from another backend")));
    } else {
      out.push_back(std::move(done->result()));
    }
  }
  return out;
}

absl::StatusOr<FileDigest> Storage::HashObject(const std::string& key) {
  DS_ASSIGN_OR_RETURN(std::string data, ReadAll(key, size_t{1} << 32));
  return FileDigest{Sha256Hex(data), data.size()};
}

absl::StatusOr<std::vector<ObjectInfo>> Storage::ListTempObjects(const std::string&) {
  return std::vector<ObjectInfo>{};
}

absl::Status Storage::AbandonUpload(const std::string&, const std::string&) {
  return absl::OkStatus();
}

absl::Status Storage::ForgetContentHash(const std::string& key) {
  return absl::UnimplementedError(absl::StrCat(Describe(), " keeps no content hash of ", key));
}

absl::Status Storage::RecordContentHash(const ObjectInfo& listed, const std::string&) {
  return absl::UnimplementedError(
      absl::StrCat(Describe(), " records content hashes only at its own puts (", listed.key, ")"));
}

absl::Status Storage::RemoveTempObject(const std::string& key) {
  return absl::UnimplementedError(absl::StrCat("cannot remove temp object ", key));
}

StorageFeatures AdvertisedFeatures(const StorageUrl& url) {
  StorageFeatures f;
  if (url.scheme == "file") {
    // The agent writes a directory or share itself, staging from the files it scans, and each
    // object lands under its key by rename.
    f.direct_writes = true;
    f.stages_from_fd = true;
    f.atomic_replace = true;
  } else if (url.scheme == "azblob") {
    // Agents hold no account key: they write with per-blob SAS grants; a committed block list
    // replaces a blob at once.
    f.write_grants = true;
    f.atomic_replace = true;
  }
  return f;
}

absl::StatusOr<std::unique_ptr<Storage>> OpenStorage(const StorageUrl& url) {
  return OpenStorage(url, StorageCredentials{});
}

absl::StatusOr<std::unique_ptr<Storage>> OpenStorage(const StorageUrl& url,
                                                     const StorageCredentials& credentials) {
  if (url.scheme == "file") return OpenDirStorage(url.path);
  if (url.scheme == "azblob") {
    if (credentials.account_key.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(url.text,
                       " needs the storage account key (configure the key file or "
                       "environment variable); agents write through per-file SAS "
                       "grants instead"));
    }
    AzBlobOptions options;
    options.account = url.account;
    options.container = url.container;
    options.endpoint = url.endpoint;
    options.account_key = credentials.account_key;
    return OpenAzBlobStorage(options);
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported storage scheme '", url.scheme, "'"));
}

}  // namespace ds

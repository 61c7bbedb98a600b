// Service SAS signing and the agent's SAS-only upload.
//
// Service SAS, sv >= 2020-12-06: the string to sign is 16 fields joined by '\n' (no trailing
// newline): sp, st, se, /blob/ACCOUNT/CONTAINER/BLOB, si, sip, spr, sv, sr, snapshot time, ses,
// rscc, rscd, rsce, rscl, rsct. The canonical resource uses the blob name unencoded and is the
// same for path-style (Azurite) and virtual-host endpoints.
#include "storage/azblob/sas.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/mutex.h"
#include "storage/azblob/azblob_rest.h"

namespace ds {
namespace {

using azblob::BlobRequest;
using azblob::ErrorFromResponse;

// Renewals in a row (without a successful request between them) before a 403 stands.
constexpr int kMaxRenewalsWithoutProgress = 2;

bool IsIpLiteralOrLocalhost(std::string_view host) {
  if (host == "localhost" || (!host.empty() && host.front() == '[')) return true;
  for (char c : host) {
    if (!absl::ascii_isdigit(c) && c != '.') return false;
  }
  return !host.empty();
}

// The blob name in a blob URL's (encoded) path: after the container, which follows the account
// for path-style hosts (an IP address or localhost, as Azure's SDKs decide).
std::string BlobNameFromUrl(const azblob::ParsedUrl& url) {
  std::string host = url.origin.substr(url.origin.find("://") + 3);
  if (host.front() != '[') host = host.substr(0, host.find(':'));
  const int segments =
      IsIpLiteralOrLocalhost(host) ? 2 : 1;  // "/ACCOUNT/CONTAINER" or "/CONTAINER"
  std::string_view rest = url.path;          // starts with '/'
  for (int i = 0; i < segments; ++i) {
    const size_t slash = rest.find('/', 1);
    if (slash == std::string_view::npos) return "";
    rest = rest.substr(slash);
  }
  return azblob::DecodePercent(rest.substr(1));
}

// Authorises requests for one blob with a SAS in the query, renewing it on 403. Thread-safe:
// blocks of one file go out in parallel; when several are refused by the same expired SAS, one
// renewal serves them all.
class SasTransport final : public azblob::Transport {
 public:
  SasTransport(azblob::ParsedUrl url, std::function<absl::StatusOr<std::string>()> renew,
               SasPutStats* stats)
      : url_(std::move(url)),
        renew_(std::move(renew)),
        stats_(stats),
        pool_(url_.origin, azblob::TransportOptions{}) {}

  std::string sas() const {
    MutexLock lock(&mu_);
    return sas_;
  }

  absl::StatusOr<http::ClientResponse> Send(const BlobRequest& request) override {
    int renewals = 0;
    for (;;) {
      std::string sas;
      uint64_t generation;
      {
        MutexLock lock(&mu_);
        sas = sas_;
        generation = generation_;
      }
      http::ClientRequest out;
      out.method = request.method;
      out.target = request.path;
      std::string query = azblob::EncodeQuery(request.query);
      if (!sas.empty()) absl::StrAppend(&query, query.empty() ? "" : "&", sas);
      if (!query.empty()) absl::StrAppend(&out.target, "?", query);
      out.headers = request.headers;
      out.headers.emplace_back("x-ms-version", azblob::kApiVersion);
      out.body = request.body;
      out.body_size = request.body_size;
      out.max_send_bytes_per_second = request.max_send_bytes_per_second;
      out.rate_limiter = request.rate_limiter;
      out.cancel = request.cancel;
      out.max_response_bytes = request.max_response_bytes;
      out.timeout = azblob::RequestTimeout(pool_.options(), request.body_size,
                                           request.max_send_bytes_per_second);
      DS_ASSIGN_OR_RETURN(http::ClientResponse r, pool_.SendWithRetries(out, request.what));
      if (r.status != 403 || !renew_ || renewals == kMaxRenewalsWithoutProgress) return r;
      ++renewals;
      MutexLock renewing(&renew_mu_);
      {
        MutexLock lock(&mu_);
        if (generation_ != generation) continue;  // another request renewed it meanwhile
      }
      spdlog::info("azblob: {}: SAS refused ({}), renewing it", request.what, azblob::ErrorCode(r));
      absl::StatusOr<std::string> fresh = renew_();
      if (!fresh.ok()) {
        return absl::Status(fresh.status().code(),
                            absl::StrCat("renewing the SAS for ", request.what,
                                         " failed: ", fresh.status().message()));
      }
      DS_ASSIGN_OR_RETURN(azblob::ParsedUrl parsed, azblob::ParseHttpUrl(*fresh));
      if (parsed.origin != url_.origin || parsed.path != url_.path) {
        return absl::FailedPreconditionError(absl::StrCat("the renewed SAS is for ", parsed.origin,
                                                          parsed.path, ", not ", url_.origin,
                                                          url_.path));
      }
      MutexLock lock(&mu_);
      sas_ = std::move(parsed.query);
      ++generation_;
      if (stats_ != nullptr) ++stats_->sas_renewals;
    }
  }

 private:
  // Constant after construction.
  const azblob::ParsedUrl url_;  // origin and path; its query is the first SAS
  const std::function<absl::StatusOr<std::string>()> renew_;  // called under renew_mu_ only
  SasPutStats* const stats_ ABSL_PT_GUARDED_BY(mu_);          // may be null
  azblob::ClientPool pool_;

  Mutex renew_mu_;  // one renewal at a time
  mutable Mutex mu_ ABSL_ACQUIRED_AFTER(renew_mu_);
  std::string sas_ ABSL_GUARDED_BY(mu_) = url_.query;  // the current SAS
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;       // renewals so far
};

}  // namespace

absl::StatusOr<std::string> MakeBlobSas(std::string_view account, std::string_view account_key,
                                        std::string_view container, std::string_view blob,
                                        std::string_view permissions, int64_t start_unix_s,
                                        int64_t expiry_unix_s, bool allow_http) {
  // Permissions must be a non-empty subsequence of the canonical order.
  constexpr std::string_view kOrder = "racwd";
  size_t at = 0;
  for (char p : permissions) {
    const size_t found = kOrder.find(p, at);
    if (found == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("SAS permissions '", std::string(permissions),
                                                     "' must be a subsequence of 'racwd'"));
    }
    at = found + 1;
  }
  if (permissions.empty()) return absl::InvalidArgumentError("SAS permissions are empty");
  if (expiry_unix_s <= start_unix_s || expiry_unix_s <= 0) {
    return absl::InvalidArgumentError("SAS expiry must be after its start");
  }
  absl::StatusOr<std::string> key = Base64Decode(account_key);
  if (!key.ok() || key->empty()) {
    return absl::InvalidArgumentError("the account key is missing or not valid base64");
  }
  const std::string start = start_unix_s > 0 ? azblob::IsoSeconds(start_unix_s) : "";
  const std::string expiry = azblob::IsoSeconds(expiry_unix_s);
  const std::string protocol = allow_http ? "https,http" : "https";
  const std::string resource = absl::StrCat("/blob/", std::string(account), "/",
                                            std::string(container), "/", std::string(blob));
  const std::string to_sign =
      absl::StrJoin({std::string(permissions), start, expiry, resource, std::string() /*si*/,
                     std::string() /*sip*/, protocol, std::string(azblob::kApiVersion),
                     std::string("b"), std::string() /*snapshot*/, std::string() /*ses*/,
                     std::string() /*rscc*/, std::string() /*rscd*/, std::string() /*rsce*/,
                     std::string() /*rscl*/, std::string() /*rsct*/},
                    "\n");
  const std::string sig = Base64Encode(HmacSha256(*key, to_sign));
  std::vector<std::pair<std::string, std::string>> query = {{"sv", azblob::kApiVersion}};
  if (!start.empty()) query.emplace_back("st", start);
  query.emplace_back("se", expiry);
  query.emplace_back("sr", "b");
  query.emplace_back("sp", std::string(permissions));
  query.emplace_back("spr", protocol);
  query.emplace_back("sig", sig);
  return azblob::EncodeQuery(query);
}

absl::StatusOr<PutResult> PutFileWithSas(const std::string& blob_url_with_sas,
                                         const std::filesystem::path& source,
                                         const PutOptions& options, size_t block_size,
                                         std::function<absl::StatusOr<std::string>()> renew_sas,
                                         SasPutStats* stats, const StagedBlockMemory* memory) {
  DS_ASSIGN_OR_RETURN(azblob::ParsedUrl url, azblob::ParseHttpUrl(blob_url_with_sas));
  if (azblob::QueryParam(url.query, "sig").empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob URL ", url.origin, url.path, " carries no SAS (sig=...)"));
  }
  const std::string key = BlobNameFromUrl(url);
  if (key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob URL ", url.origin, url.path, " names no blob"));
  }
  if (block_size == 0) return absl::InvalidArgumentError("block size must be positive");
  const std::string what = absl::StrCat(url.origin, url.path);  // never the SAS
  if (options.cancel != nullptr && options.cancel->load()) {
    return absl::CancelledError(absl::StrCat("put ", what, " cancelled"));
  }
  SasPutStats local_stats;
  if (stats == nullptr) stats = &local_stats;
  *stats = SasPutStats{};
  SasTransport transport(url, std::move(renew_sas), stats);
  const std::string path = url.path;

  // Blocks staged earlier need not go again: a SAS with 'r' lists them (Get Block List); with a
  // write-only SAS the caller's memory tells.
  auto can_read = [&transport] {
    return azblob::QueryParam(transport.sas(), "sp").find('r') != std::string::npos;
  };
  std::function<absl::StatusOr<std::set<std::string>>()> already_staged;
  if (can_read()) {
    already_staged = [&]() { return azblob::UncommittedBlocks(transport, path, what); };
  } else if (memory != nullptr && memory->recall) {
    already_staged = [memory]() -> absl::StatusOr<std::set<std::string>> {
      return memory->recall();
    };
  }
  std::function<void(const std::string&)> on_staged;
  if (memory != nullptr && memory->remember) on_staged = memory->remember;

  absl::StatusOr<azblob::StagedContent> staged;
  absl::StatusOr<http::ClientResponse> committed;
  for (int attempt = 0;; ++attempt) {
    azblob::StageStats stage_stats;
    staged = azblob::ReadAndStage(&transport, path, what, source, options, block_size,
                                  already_staged, &stage_stats, on_staged);
    stats->blocks_total = stage_stats.blocks_total;
    stats->blocks_uploaded += stage_stats.blocks_uploaded;
    stats->blocks_already_staged = stage_stats.blocks_already_staged;
    stats->max_blocks_in_flight = std::max(stats->max_blocks_in_flight,
                                           stage_stats.max_blocks_in_flight);
    if (!staged.ok()) return staged.status();
    const int64_t mtime_ns = options.mtime_ns != 0 ? options.mtime_ns : staged->source_mtime_ns;
    DS_ASSIGN_OR_RETURN(committed,
                        azblob::Commit(transport, path, what, *staged, mtime_ns, {}, options));
    // A remembered block the service no longer holds: forget the memory, send everything.
    if (committed->status == 400 && azblob::ErrorCode(*committed) == "InvalidBlockList" &&
        stage_stats.blocks_already_staged > 0 && attempt == 0) {
      spdlog::warn("azblob: {}: blocks staged earlier are gone; uploading the file again", what);
      if (memory != nullptr && memory->forget) memory->forget();
      already_staged = nullptr;
      continue;
    }
    break;
  }
  if (committed->status != 201) return ErrorFromResponse(*committed, absl::StrCat("commit ", what));
  if (memory != nullptr && memory->forget) memory->forget();
  const int64_t mtime_ns = options.mtime_ns != 0 ? options.mtime_ns : staged->source_mtime_ns;

  if (options.verify && can_read()) {
    DS_ASSIGN_OR_RETURN(azblob::BlobProps landed, azblob::HeadBlob(transport, path, what));
    if (landed.size != staged->bytes || landed.sha256 != staged->sha256) {
      return absl::DataLossError(absl::StrCat("verify failed for ", what, ": wrote ", staged->bytes,
                                              " bytes with SHA-256 ", staged->sha256,
                                              ", the service reports ", landed.size,
                                              " bytes with SHA-256 '", landed.sha256, "'"));
    }
  }
  PutResult result;
  result.info = {key, staged->bytes, mtime_ns, staged->sha256};
  return result;
}

}  // namespace ds

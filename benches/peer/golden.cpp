// Golden references from llama.cpp for one GGUF: tokenizations, chat-template renderings and
// greedy decodes with logit margins, in the format of tests/fixtures/golden/*.json.
//
//   benches/peer/golden.sh MODEL_ID   (builds this against target/peer's llama.cpp and runs it)
//   golden MODEL.gguf CASES.json > OUT.json
//
// CASES.json holds `tokenize` (objects with `text`) and `greedy` (objects with `name` and
// `messages`), e.g. an existing golden file: only those fields are read. Two threads, CPU.
#include "llama.h"
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

using json = nlohmann::ordered_json;

static std::vector<llama_token> tokenize(const llama_vocab *vocab, const std::string &text, bool special) {
    int n = -llama_tokenize(vocab, text.data(), (int)text.size(), nullptr, 0, false, special);
    std::vector<llama_token> out(std::max(n, 0));
    if (n > 0) llama_tokenize(vocab, text.data(), (int)text.size(), out.data(), n, false, special);
    return out;
}

static std::string piece(const llama_vocab *vocab, llama_token t) {
    char buf[256];
    int n = llama_token_to_piece(vocab, t, buf, sizeof(buf), 0, false);
    return n > 0 ? std::string(buf, n) : std::string();
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.gguf CASES.json\n", argv[0]);
        return 2;
    }
    std::ifstream in(argv[2]);
    if (!in) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 2;
    }
    json cases = json::parse(in);
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    json out;
    out["tokenize"] = json::array();
    for (auto &c : cases["tokenize"]) {
        std::string text = c["text"];
        json o;
        o["ids"] = tokenize(vocab, text, false);
        o["ids_parse_special"] = tokenize(vocab, text, true);
        o["text"] = text;
        out["tokenize"].push_back(o);
    }
    const char *tmpl = llama_model_chat_template(model, nullptr);
    out["greedy"] = json::array();
    for (auto &c : cases["greedy"]) {
        std::vector<std::string> roles, contents;
        for (auto &m : c["messages"]) {
            roles.push_back(m["role"]);
            contents.push_back(m["content"]);
        }
        std::vector<llama_chat_message> msgs;
        for (size_t i = 0; i < roles.size(); i++) msgs.push_back({roles[i].c_str(), contents[i].c_str()});
        std::vector<char> buf(1 << 16);
        int n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), true, buf.data(), (int)buf.size());
        if (n < 0 || n > (int)buf.size()) {
            fprintf(stderr, "chat template failed for %s\n", std::string(c["name"]).c_str());
            return 1;
        }
        std::string rendered(buf.data(), n);
        std::vector<llama_token> prompt = tokenize(vocab, rendered, true);

        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = 2048;
        cp.n_batch = 2048;
        cp.n_threads = 2;
        cp.n_threads_batch = 2;
        llama_context *ctx = llama_init_from_model(model, cp);
        std::vector<llama_token> ids = prompt;
        llama_batch batch = llama_batch_get_one(ids.data(), (int)ids.size());
        json greedy_ids = json::array(), pieces = json::array(), margins = json::array(), top5s = json::array();
        std::string text;
        for (int step = 0; step < 64; step++) {
            if (llama_decode(ctx, batch) != 0) {
                fprintf(stderr, "decode failed\n");
                return 1;
            }
            const float *logits = llama_get_logits_ith(ctx, -1);
            std::vector<int> idx(n_vocab);
            for (int i = 0; i < n_vocab; i++) idx[i] = i;
            std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(),
                              [&](int a, int b) { return logits[a] > logits[b]; });
            llama_token tok = idx[0];
            greedy_ids.push_back(tok);
            margins.push_back(logits[idx[0]] - logits[idx[1]]);
            if (step < 4) {
                json t = json::array();
                for (int k = 0; k < 5; k++) t.push_back(json::array({idx[k], logits[idx[k]]}));
                top5s.push_back(t);
            }
            if (llama_vocab_is_eog(vocab, tok)) break;
            std::string p = piece(vocab, tok);
            pieces.push_back(p);
            text += p;
            static llama_token next;
            next = tok;
            batch = llama_batch_get_one(&next, 1);
        }
        llama_free(ctx);
        json o;
        o["greedy_ids"] = greedy_ids;
        o["greedy_pieces"] = pieces;
        o["greedy_text"] = text;
        o["messages"] = c["messages"];
        o["name"] = c["name"];
        o["prompt_ids"] = prompt;
        o["rendered"] = rendered;
        o["top1_margin_per_step"] = margins;
        o["top5_logits_first_steps"] = top5s;
        out["greedy"].push_back(o);
    }
    llama_model_free(model);
    printf("%s\n", out.dump().c_str());
    return 0;
}

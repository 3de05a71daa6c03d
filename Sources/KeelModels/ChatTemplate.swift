import Foundation

public enum ChatRole: String, Sendable, CaseIterable {
    case system, user, assistant
}

public struct ChatMessage: Equatable, Sendable {
    public var role: ChatRole
    public var content: String
    public init(role: ChatRole, content: String) {
        self.role = role
        self.content = content
    }
}

/// The ChatML chat format (SmolLM2, Qwen, HF's default template), rendered in Swift.
///
///     <|im_start|>{role}\n{content}<|im_end|>\n     for each message
///     <|im_start|>assistant\n                        if addGenerationPrompt
///
/// SmolLM2's template also starts with a default system turn when the first message is not a system one.
/// Keel has no Jinja engine: `init(jinjaSource:)` recognises the exact ChatML templates below (SmolLM2's,
/// and HF's default ChatML) and rejects every other template, so that no model is silently prompted in
/// a format it was not trained on.
public struct ChatMLTemplate: Equatable, Sendable {
    /// The system turn inserted before a conversation that does not start with one; nil for none.
    public let defaultSystemPrompt: String?

    public static let turnStart = "<|im_start|>"
    public static let turnEnd = "<|im_end|>"

    public init(defaultSystemPrompt: String?) {
        self.defaultSystemPrompt = defaultSystemPrompt
    }

    // The Jinja text of the recognised templates, with each Jinja "\n" escape already a newline.
    private static let loopStart = "{% for message in messages %}"
    private static let defaultSystemStart =
        "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    private static let defaultSystemEnd = "<|im_end|>\n' }}{% endif %}"
    private static let messageTurn =
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    private static let loopEndAndGenerationPrompt =
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

    /// Recognises a ChatML Jinja template (from GGUF `tokenizer.chat_template` or HF `chat_template`).
    public init(jinjaSource: String) throws {
        // A Jinja string literal may spell a newline as the escape "\n" or as the character itself.
        let source = jinjaSource.replacingOccurrences(of: "\\n", with: "\n")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let plain = Self.loopStart + Self.messageTurn + Self.loopEndAndGenerationPrompt
        if source == plain {
            self.init(defaultSystemPrompt: nil)
            return
        }
        let prefix = Self.loopStart + Self.defaultSystemStart
        let suffix = Self.defaultSystemEnd + Self.messageTurn + Self.loopEndAndGenerationPrompt
        if source.hasPrefix(prefix), source.hasSuffix(suffix), source.count >= prefix.count + suffix.count {
            let prompt = String(source.dropFirst(prefix.count).dropLast(suffix.count))
            // The prompt sits inside a single-quoted Jinja literal: quotes, escapes or tags would mean
            // the template is not the plain literal this renderer assumes.
            if !prompt.contains("'"), !prompt.contains("\\"), !prompt.contains("{"), !prompt.contains("}") {
                self.init(defaultSystemPrompt: prompt)
                return
            }
        }
        throw TokenizerError("chat template is not a ChatML template Keel can render (SmolLM2's or HF's default ChatML; Keel has no general Jinja engine). It begins: \(String(jinjaSource.prefix(120)).debugDescription)")
    }

    /// The prompt text for `messages`, exactly as the Jinja template renders it.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> String {
        var text = ""
        for (index, message) in messages.enumerated() {
            if index == 0, message.role != .system, let defaultSystemPrompt {
                text += Self.turn(role: ChatRole.system.rawValue, content: defaultSystemPrompt)
            }
            text += Self.turn(role: message.role.rawValue, content: message.content)
        }
        if addGenerationPrompt { text += Self.turnStart + ChatRole.assistant.rawValue + "\n" }
        return text
    }

    private static func turn(role: String, content: String) -> String {
        turnStart + role + "\n" + content + turnEnd + "\n"
    }
}

extension BPETokenizer {
    /// The chat format this tokenizer was distributed with; throws if it has none or it is not ChatML.
    public func chatTemplate() throws -> ChatMLTemplate {
        guard let chatTemplateSource else {
            throw TokenizerError("the tokenizer has no chat template (GGUF tokenizer.chat_template / HF chat_template)")
        }
        return try ChatMLTemplate(jinjaSource: chatTemplateSource)
    }

    /// Ids of the rendered conversation, with the template's control tokens ("<|im_start|>") as their
    /// ids, as HF `apply_chat_template(tokenize=True)` does. Message text that spells a control token
    /// also becomes that token there, as in HF.
    public func encodeChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> [Int] {
        encode(try chatTemplate().render(messages, addGenerationPrompt: addGenerationPrompt), allowSpecial: true)
    }
}

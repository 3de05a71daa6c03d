import XCTest
@testable import KeelModels

/// The Swift ChatML renderer against the outputs of Jinja2 3.1 rendering SmolLM2's template (the text
/// stored in the GGUF), and the ids HF `tokenizers` gives for them.
final class ChatTemplateTests: XCTestCase {
    private let smolLM2System = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"

    func testSmolLM2TemplateIsRecognisedFromTheGGUF() throws {
        let template = try ModelFixtures.smolLM2Tokenizer().chatTemplate()
        XCTAssertEqual(template.defaultSystemPrompt, "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
    }

    func testRenderMatchesJinja() throws {
        let template = try ModelFixtures.smolLM2Tokenizer().chatTemplate()
        XCTAssertEqual(template.render([ChatMessage(role: .user, content: "Hi there"),
                                        ChatMessage(role: .assistant, content: "Hello!")], addGenerationPrompt: false),
                       smolLM2System + "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n")
        XCTAssertEqual(template.render([ChatMessage(role: .system, content: "Be brief."),
                                        ChatMessage(role: .user, content: "2+2?")], addGenerationPrompt: true),
                       "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")
        // No messages: the loop never runs, so there is no default system turn either.
        XCTAssertEqual(template.render([], addGenerationPrompt: true), "<|im_start|>assistant\n")
    }

    func testEncodeChatUsesControlTokenIDs() throws {
        let tokenizer = try ModelFixtures.smolLM2Tokenizer()
        XCTAssertEqual(try tokenizer.encodeChat([ChatMessage(role: .user, content: "Hi there")], addGenerationPrompt: true),
                       [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407,
                        19712, 8182, 2, 198, 1, 4093, 198, 26843, 665, 2, 198, 1, 520, 9531, 198])
    }

    func testHuggingFaceDefaultChatMLHasNoSystemTurn() throws {
        let source = #"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"#
        let template = try ChatMLTemplate(jinjaSource: source)
        XCTAssertNil(template.defaultSystemPrompt)
        XCTAssertEqual(template.render([ChatMessage(role: .user, content: "x")], addGenerationPrompt: false),
                       "<|im_start|>user\nx<|im_end|>\n")
    }

    func testOtherTemplatesAreRejected() {
        let llama3 = "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        XCTAssertThrowsError(try ChatMLTemplate(jinjaSource: llama3)) { error in
            XCTAssertTrue("\(error)".contains("not a ChatML template Keel can render"), "\(error)")
        }
        // SmolLM2's shape with a default prompt that is not a plain literal.
        let injected = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n' + x + '<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        XCTAssertThrowsError(try ChatMLTemplate(jinjaSource: injected))
    }

    func testTokenizerWithoutTemplateSaysSo() throws {
        let tokenizer = try BPETokenizer(tokens: ["a"], merges: [], tokenTypes: [.normal], pretokenizer: .gpt2,
                                         bosTokenID: nil, eosTokenID: nil, unknownTokenID: nil, paddingTokenID: nil)
        XCTAssertThrowsError(try tokenizer.encodeChat([], addGenerationPrompt: true)) { error in
            XCTAssertTrue("\(error)".contains("has no chat template"), "\(error)")
        }
    }
}

import Foundation
import KeelCore
import XCTest
@testable import RuleRewards

/// The rule rewards on hand-computed cases.
final class RuleRewardsTests: XCTestCase {
    func testLengthRewardLinearAndExponential() throws {
        let linear = try LengthReward(options: options(LengthReward.descriptor, ["limit": .int(3), "width": .double(4)]))
        XCTAssertEqual(try linear.score(prompt: "", response: "  one two three \n"), 1)          // 3 words
        XCTAssertEqual(try linear.score(prompt: "", response: "a b c d"), 0.75)                  // 1 − 1/4
        XCTAssertEqual(try linear.score(prompt: "", response: "a b c d e f"), 0.25)              // 1 − 3/4
        XCTAssertEqual(try linear.score(prompt: "", response: "a b c d e f g h i"), 0)           // floored
        let exponential = try LengthReward(options: options(LengthReward.descriptor, [
            "limit": .int(2), "unit": .string("characters"), "decay": .string("exponential"), "width": .double(2)]))
        XCTAssertEqual(try exponential.score(prompt: "", response: " é!"), 1)                    // 2 characters after trimming
        XCTAssertEqual(try exponential.score(prompt: "", response: "abcd"), exp(-1), accuracy: 1e-15)
        XCTAssertEqual(try exponential.score(prompt: "", response: "abcdefgh"), exp(-3), accuracy: 1e-15)
    }

    func testTopicRewardIsTheShareOfThePromptsContentWordsUsed() throws {
        let plugin = try TopicReward(options: options(TopicReward.descriptor, [:]))
        // "What is the best way to boil eggs?" → {boil, egg}: "what is the best way to" are stop words.
        XCTAssertEqual(plugin.contentWords("What is the best way to boil eggs?"), ["boil", "egg"])
        XCTAssertEqual(try plugin.score(prompt: "What is the best way to boil eggs?", response: "Boiling an egg takes 9 minutes."), 1)
        XCTAssertEqual(try plugin.score(prompt: "How do I boil eggs?", response: "Put them in boiling water."), 0.5)
        XCTAssertEqual(try plugin.score(prompt: "How do I boil eggs?", response: "Momma, I'se tired."), 0)
        XCTAssertEqual(try plugin.score(prompt: "What is it?", response: "anything"), 1)          // no content words
        let ignoring = try TopicReward(options: options(TopicReward.descriptor, ["ignore": .string("Eggs, x"), "min_word_length": .int(5)]))
        // "boil" is shorter than 5 and "eggs" is ignored; "boiling" stems to "boil".
        XCTAssertEqual(ignoring.contentWords("How do I boil eggs in boiling water?"), ["boil", "water"])
    }

    func testKeywordRewardCountsEachEntryOnce() throws {
        let plugin = try KeywordReward(options: options(KeywordReward.descriptor, [
            "required": .string("because, therefore"), "forbidden": .string("as an AI"), "weight_per_match": .double(0.5)]))
        XCTAssertEqual(try plugin.score(prompt: "", response: "Because of rain, and BECAUSE of wind."), 0.5)
        XCTAssertEqual(try plugin.score(prompt: "", response: "because x, therefore y"), 1.0)
        XCTAssertEqual(try plugin.score(prompt: "", response: "As an AI, I cannot; therefore no."), 0)
        XCTAssertEqual(try plugin.score(prompt: "", response: "as an ai"), -0.5)
        XCTAssertEqual(try plugin.score(prompt: "", response: "nothing"), 0)
        // Keyword mode escapes regex syntax: "a.b" does not match "axb".
        let literal = try KeywordReward(options: options(KeywordReward.descriptor, ["required": .string("a.b")]))
        XCTAssertEqual(try literal.score(prompt: "", response: "axb"), 0)
        XCTAssertEqual(try literal.score(prompt: "", response: "see a.b"), 1)
    }

    func testKeywordRewardRegexOnePerLineAndCaseSensitivity() throws {
        let plugin = try KeywordReward(options: options(KeywordReward.descriptor, [
            "required": .string("^\\d{2,3}$\n(?i)sure"), "match": .string("regex"), "case_sensitive": .bool(true),
            "forbidden": .string("Sorry")]))
        XCTAssertEqual(try plugin.score(prompt: "", response: "123"), 1)
        XCTAssertEqual(try plugin.score(prompt: "", response: "SURE: 42"), 1)
        XCTAssertEqual(try plugin.score(prompt: "", response: "sorry"), 0)                        // case-sensitive: not forbidden
        XCTAssertEqual(try plugin.score(prompt: "", response: "Sorry"), -1)
        let problems = KeywordReward.checkOptions(options(KeywordReward.descriptor, ["forbidden": .string("(unclosed"), "match": .string("regex")]))
        XCTAssertEqual(problems.map(\.option), ["forbidden"])
        XCTAssertEqual(KeywordReward.checkOptions(options(KeywordReward.descriptor, [:])).map(\.option), ["required"])
        XCTAssertThrowsError(try KeywordReward(options: options(KeywordReward.descriptor, [:])))
    }

    func testExactAnswerFromPromptOrOption() throws {
        let contains = try ExactAnswerReward(options: options(ExactAnswerReward.descriptor, [:]))
        let prompt = "What is 6 × 7?\nExpected answer:  42 \nThink step by step."
        XCTAssertEqual(try contains.expectedAnswer(prompt: prompt), "42")
        XCTAssertEqual(try contains.score(prompt: prompt, response: "The answer is 42."), 1)
        XCTAssertEqual(try contains.score(prompt: prompt, response: "The answer is 420."), 0)     // touches a digit
        XCTAssertEqual(try contains.score(prompt: prompt, response: "1420, no: 42"), 1)           // second occurrence
        XCTAssertThrowsError(try contains.score(prompt: "no answer here", response: "42")) {
            XCTAssertTrue("\($0)".contains("answer_pattern"), "\($0)")
        }
        let equals = try ExactAnswerReward(options: options(ExactAnswerReward.descriptor, [
            "answer": .string("Paris  France"), "match": .string("equals")]))
        XCTAssertEqual(try equals.score(prompt: "anything", response: " paris\nfrance "), 1)
        XCTAssertEqual(try equals.score(prompt: "anything", response: "Paris, France"), 0)
        let sensitive = try ExactAnswerReward(options: options(ExactAnswerReward.descriptor, [
            "answer": .string("Paris"), "case_sensitive": .bool(true)]))
        XCTAssertEqual(try sensitive.score(prompt: "", response: "It is PARIS"), 0)
        XCTAssertEqual(try sensitive.score(prompt: "", response: "It is Paris"), 1)
        XCTAssertEqual(ExactAnswerReward.checkOptions(options(ExactAnswerReward.descriptor, ["answer_pattern": .string("no group")])).map(\.option),
                       ["answer_pattern"])
    }

    func options(_ descriptor: PluginDescriptor, _ overrides: [String: OptionValue]) -> ResolvedOptions {
        ResolvedOptions(defaultsOf: descriptor.options.map { spec in
            overrides[spec.name].map { OptionSpec(spec.name, spec.type, default: .value($0), help: spec.help) } ?? spec
        })
    }
}

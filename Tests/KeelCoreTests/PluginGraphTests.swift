import XCTest
@testable import KeelCore

/// Graph refusals: each names both conflicting nodes (the first by its key path and position).
final class PluginGraphTests: XCTestCase {
    var fixture: RecipeFixture!

    override func setUpWithError() throws { fixture = try RecipeFixture() }
    override func tearDown() { fixture = nil }

    func testLossNeedingRewardsWithoutRewardPlugin() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
            loss: {name: test-reward-loss}
            training: {steps: 1}
            """), ["r.yaml:4:7: loss: 'test-reward-loss' needs signal `rewards`; its provider 'rewards' requires the recipe's reward, but the recipe has no reward plugin; expected a `reward:` node"])
    }

    func testSignalNeedsWithoutAProvider() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
            loss:
              - {name: test-pairwise}
              - {name: test-unprovided}
            training: {steps: 1}
            """), ["r.yaml:6:5: loss[1]: 'test-unprovided' needs signal `nobody-computes-this`, but no signal provider computes it; expected a built-in or installed plugin whose descriptor provides `nobody-computes-this`"])
    }

    func testSignalWithTwoProviders() throws {
        var registry = testRegistry()
        try registry.register(TestVectorProvider2.self)
        XCTAssertThrowsError(try fixture.load("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
            reward: {name: test-length}
            loss: {name: test-signal-loss}
            training: {steps: 1}
            """, registry: registry)) {
            XCTAssertEqual(($0 as? RecipeErrors)?.diagnostics.map(\.description), ["r.yaml:5:7: loss: 'test-signal-loss' needs signal `test-vector` (through 'test-signal-provider', which computes `test-signal` from it), which 2 providers compute ('test-vector-provider' and 'test-vector-provider-2'); expected exactly one (remove the others from var/plugins/)"])
        }
    }

    func testProviderRequirementMissingThroughAnotherProvider() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
            loss: {name: test-signal-loss}
            training: {steps: 1}
            """), ["r.yaml:4:7: loss: 'test-signal-loss' needs signal `test-vector` (through 'test-signal-provider', which computes `test-signal` from it); its provider 'test-vector-provider' requires the recipe's reward, but the recipe has no reward plugin; expected a `reward:` node"])
    }

    func testProvidersComputeInDependencyOrder() throws {
        let graph = try fixture.load("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
            reward: {name: test-length}
            loss:
              - {name: test-signal-loss}
              - {name: test-pairwise}
            training: {steps: 1}
            """)
        XCTAssertEqual(graph.signalProviders.map { $0.type.descriptor.name }, ["test-vector-provider", "test-signal-provider", "policy", "reference"])
        XCTAssertEqual(graph.signalProviders.map(\.keys), [[TestVectorProvider.vector.key], [TestSignalProvider.signal.key],
                                                          [Signals.policyLogProbs.key], [Signals.referenceLogProbs.key]])
        XCTAssertEqual(graph.referenceNeededBy?.name, "test-pairwise")
    }

    func testReferenceMutatingSchedulerWithCachedReferenceLogProbs() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
            loss: {name: test-pairwise}
            reference:
              cache_logprobs: true
            schedulers:
              - {name: test-ref-sync, every: 64}
            training: {steps: 1}
            """), ["r.yaml:8:5: schedulers[0]: 'test-ref-sync' changes the reference model during training, but reference.cache_logprobs (line 6) computes reference log-probs once; expected cache_logprobs: false"])
    }

    func testPairedLossFedUnpairedData() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: test-unpaired}
            loss: {name: test-pairwise}
            training: {steps: 1}
            """), ["r.yaml:4:7: loss: 'test-pairwise' needs paired examples, but data[0] 'test-unpaired' (line 3) produces unpaired"])
    }

    func testPairwiseOnlyTransformWithNonPairwiseLoss() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
              - {name: test-pair-only}
            loss: {name: test-single}
            training: {steps: 1}
            """), ["r.yaml:4:5: data[1]: 'test-pair-only' only works with a pairwise loss, but loss 'test-single' (line 5) is not pairwise"])
    }

    func testSourceAfterTransform() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
              - {name: shuffle}
              - {name: hh, path: pairs.jsonl}
            loss: {name: test-pairwise}
            training: {steps: 1}
            """), ["r.yaml:5:5: data[2]: source 'hh' comes after the transform data[1] 'shuffle' (line 4); expected all sources first"])
    }

    func testSourcesOfDifferentShapes() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
              - {name: test-unpaired}
            loss: {name: test-single}
            training: {steps: 1}
            """), ["r.yaml:4:5: data[1]: 'test-unpaired' produces unpaired examples, but data[0] 'preference-jsonl' (line 3) produces paired; expected one shape from all sources"])
    }

    func testTransformBeforeAnySource() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: shuffle}
              - {name: preference-jsonl, path: pairs.jsonl}
            loss: {name: test-pairwise}
            training: {steps: 1}
            """), [
                "r.yaml:3:5: data[0]: 'shuffle' is a transform with no source before it; expected the data list to start with a source",
                "r.yaml:4:5: data[1]: source 'preference-jsonl' comes after the transform data[0] 'shuffle' (line 3); expected all sources first",
            ])
    }

    func testFilterThatCannotReadTheShape() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: test-unpaired}
              - {name: drop-flagged}
            loss: {name: test-single}
            training: {steps: 1}
            """), ["r.yaml:4:5: data[1]: 'drop-flagged' accepts paired examples, but data[0] 'test-unpaired' (line 3) produces unpaired"])
    }

    func testTwoSplits() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
              - {name: split, eval_count: 1}
              - {name: split, eval_fraction: 0.5}
            loss: {name: test-pairwise}
            training: {steps: 1}
            """), ["r.yaml:5:5: data[2]: 'split' splits again after data[1] 'split' (line 4); expected at most one split"])
    }

    func testSameLossTwiceInAWeightedSum() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
            loss:
              - {name: test-single}
              - {name: test-single, weight: 0.5}
            training: {steps: 1}
            """), ["r.yaml:6:5: loss[1]: 'test-single' repeats loss[0] 'test-single' (line 5); expected each loss once in a weighted sum (their metrics would collide)"])
    }

    func testPairwiseRewardWithUnpairedData() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: test-unpaired}
            reward: {name: test-pair-reward}
            loss: {name: test-single}
            training: {steps: 1}
            """), ["r.yaml:4:9: reward: 'test-pair-reward' only compares pairs, but data[0] 'test-unpaired' (line 3) produces unpaired examples"])
    }

    func testReferenceSyncWithReferenceFreeLoss() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
            loss: {name: test-single}
            schedulers:
              - {name: test-ref-sync}
            training: {steps: 1}
            """), ["r.yaml:6:5: schedulers[0]: 'test-ref-sync' updates the reference model, but no plugin uses one (loss 'test-single' (line 4)); expected a loss that needs a reference"])
    }

    func testCachedReferenceForAReferenceFreeLoss() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
            loss: {name: test-single}
            reference: {cache_logprobs: true}
            training: {steps: 1}
            """), ["r.yaml:5:29: reference.cache_logprobs: configures a reference model, but no plugin needs one (loss 'test-single' (line 4)); expected no reference section"])
    }

    func testTwoSchedulersSettingTheLearningRate() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
            loss: {name: test-pairwise}
            schedulers:
              - {name: test-lr}
              - {name: test-lr-2}
            training: {steps: 1}
            """), ["r.yaml:7:5: schedulers[1]: 'test-lr-2' sets learning_rate, which schedulers[0] 'test-lr' (line 6) already sets; expected one scheduler per hyper-parameter"])
    }

    func testLearningRateSchedulerWithOptimizerSchedule() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
            loss: {name: test-pairwise}
            schedulers:
              - {name: test-lr}
            optimizer: {schedule: cosine}
            training: {steps: 1}
            """), ["r.yaml:6:5: schedulers[0]: 'test-lr' sets the learning rate, but optimizer.schedule (line 7) already schedules it; expected schedule: constant and warmup_steps: 0"])
    }

    func testEvaluationWithoutSplit() {
        XCTAssertEqual(fixture.errors("""
            model: model.gguf
            data:
              - {name: preference-jsonl, path: pairs.jsonl}
            loss: {name: test-pairwise}
            training: {steps: 100, eval_every: 10}
            """), ["r.yaml:5:36: training.eval_every: evaluates every 10 steps, but the data list has no split node; expected a `- name: split` node in data, or eval_every: 0"])
    }
}

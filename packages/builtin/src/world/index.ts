/**
 * The built-in shapes world: vocabulary, scenes, rendering, captions and their grammar, novel
 * appearances for personalisation, and the analytic evaluator with its calibration.
 */
export * from "./Augment.js"
export * from "./Calibration.js"
export * from "./Caption.js"
export * from "./ConceptImage.js"
export * from "./Detect.js"
export * from "./NovelAppearance.js"
export * from "./Render.js"
export * from "./Scene.js"
export * from "./Score.js"
export * from "./Shape.js"
export * from "./Vocabulary.js"
export * from "./Variation.js"

/**
 * Answer-accuracy evaluation on a question-answering model (cbqa-3M): question sets, greedy answers per
 * mode through the inference pipeline's stored-cache round trip, and the analysis of misses.
 */
export * from './qa.js';
export * from './misses.js';
export * from './auto.js';
export * from './calibrate.js';
export * from './calibration-sample.js';
export * from './choose-selection.js';
export * from './stories-dev.js';

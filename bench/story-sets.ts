/**
 * Multi-chunk inputs for stories260K (a model trained on children's stories): each set is 3-5 chunks of
 * related story text and a question-like continuation. Used by the fidelity test and benchmark.
 */
export interface ChunkSet {
  chunks: string[];
  question: string;
}

export const STORY_SETS: ChunkSet[] = [
  {
    chunks: [
      'Once upon a time, there was a little girl named Lily. She had a red ball.',
      'Lily liked to play with her ball in the park every day.',
      'One day, a big dog came to the park. The dog wanted to play too.',
    ],
    question: 'Lily threw the ball and the dog',
  },
  {
    chunks: [
      'Tom was a small boy who lived in a big house.',
      'He had a cat named Max. Max liked to sleep in the sun.',
      'One morning, Max could not find his favorite toy.',
      'Tom looked under the bed and found a little box.',
    ],
    question: 'Tom opened the box and saw',
  },
  {
    chunks: [
      'Sue and her mom went to the store to buy some food.',
      'At the store, Sue saw a shiny toy car on a high shelf.',
      'She asked her mom if she could have the car.',
    ],
    question: 'Mom smiled and said',
  },
  {
    chunks: [
      'There was a bird who lived in a tall tree.',
      'The bird liked to sing songs in the morning.',
      'One day, it started to rain very hard.',
      'The bird was cold and wet.',
      'A kind girl saw the bird and wanted to help.',
    ],
    question: 'The girl took the bird home and',
  },
  {
    chunks: [
      'Ben had a new red bike. He was very happy.',
      'He rode his bike to the park to show his friends.',
      'His friend Anna wanted to ride the bike too, but Ben said no.',
      'Anna was sad and went home.',
    ],
    question: 'Ben felt bad, so he',
  },
  {
    chunks: [
      'Mia loved to draw pictures of flowers.',
      'Her dad gave her a big box of colors for her birthday.',
      'She drew a sun, a tree and a happy dog.',
    ],
    question: 'Mia showed the picture to her dad and he said',
  },
];

// TEMPORARY STUB
pub struct Dkim;
impl Dkim {
    pub fn sign(&self, _m: &[u8]) -> Option<String> {
        None
    }
}
